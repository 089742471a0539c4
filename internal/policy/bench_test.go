package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkEvaluate is one plan of 1,000 steps judged by 100 rules (50
// deny, 25 warn, 25 require, each over every step), the figure in
// BENCHMARKS.md; the goal is under 50 ms per plan.
func BenchmarkEvaluate(b *testing.B) {
	b.Run("each-rule-scans", func(b *testing.B) { benchmarkEvaluate(b, false, 1000) })
	// The same rules selecting their steps through a helper set by type,
	// which OPA evaluates once per plan.
	b.Run("by-type", func(b *testing.B) { benchmarkEvaluate(b, true, 1000) })
	b.Run("by-type-50-steps", func(b *testing.B) { benchmarkEvaluate(b, true, 50) })
}

func benchmarkEvaluate(b *testing.B, byType bool, steps int) {
	var src strings.Builder
	src.WriteString("package changeops.bench\n\n")
	if byType {
		src.WriteString("by_type[s.type] contains s if some s in input.steps\n\n")
	}
	for i := range 100 {
		kind, head := "deny", fmt.Sprintf(`{"msg": "rule %d", "resource": s.urn}`, i)
		switch {
		case i >= 75:
			kind, head = "require", fmt.Sprintf(`{"group": "g%d", "msg": "rule %d"}`, i, i)
		case i >= 50:
			kind = "warn"
		}
		if byType {
			fmt.Fprintf(&src, "%s contains %s if {\n\tsome s in by_type[\"test:index/kind%d:Res\"]\n\ts.new.size > %d\n}\n\n", kind, head, i, i)
		} else {
			fmt.Fprintf(&src, "%s contains %s if {\n\tsome s in input.steps\n\ts.type == \"test:index/kind%d:Res\"\n\ts.new.size > %d\n}\n\n", kind, head, i, i)
		}
	}
	s, err := Compile(context.Background(), []File{{Origin: OriginRepo, Name: "bench.rego", Source: src.String()}}, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Stack: Stack{Name: "bench"}}
	for i := range steps {
		in.Steps = append(in.Steps, Step{Op: "update", URN: fmt.Sprintf("urn:pulumi:bench::p::test:index/kind%d:Res::r%d", i%100, i),
			Type: fmt.Sprintf("test:index/kind%d:Res", i%100), Old: map[string]any{"size": 1, "tags": map[string]any{"team": "a"}},
			New: map[string]any{"size": i, "tags": map[string]any{"team": "b"}}, ChangedKeys: []string{"size", "tags"}})
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := s.Evaluate(context.Background(), in)
		if err != nil {
			b.Fatal(err)
		}
		if steps >= 100 && (len(res.Deny) == 0 || len(res.Require) == 0) {
			b.Fatalf("nothing judged: %+v", res)
		}
	}
}
