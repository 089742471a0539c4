package activities

import (
	"strings"
	"testing"

	"github.com/changeops/changeops/contract"
)

// The comment keeps within the forge's limit however long the diffs, says
// where it cut, and still carries the record the change run reads back.
func TestPullCommentFitsTheForgeAndKeepsItsRecord(t *testing.T) {
	t.Parallel()
	report := PullReport{
		Plan: PullPlan{Number: 4, Head: strings.Repeat("a", 40), Branch: "main", BranchHead: strings.Repeat("b", 40), Tree: "t"},
		Stacks: []PullStackPlan{
			{PlanResult: PlanResult{Stack: "web prod", Update: 1, Steps: "s1", Diff: strings.Repeat("~ content\n", 5000)}},
			{PlanResult: PlanResult{Stack: "db", Create: 2, Steps: "s2", Diff: "+ table ```\n"}},
			{PlanResult: PlanResult{Stack: "dns"}, Error: "preview stack dns: | bad\nprogram"},
		},
	}
	for _, limit := range []int{4000, 65535} {
		body := RenderPullComment(report, limit)
		if len(body) > limit {
			t.Fatalf("limit %d: comment of %d bytes", limit, len(body))
		}
		if !strings.HasPrefix(body, contract.PreviewMarker) {
			t.Fatalf("limit %d: comment does not start with the marker", limit)
		}
		if limit == 4000 && !strings.Contains(body, "cut: the forge accepts 4000 bytes") {
			t.Fatalf("limit %d: a cut diff is not said to be cut", limit)
		}
		if strings.Count(body, "```") != 4 {
			t.Fatalf("limit %d: a diff's own backticks close its fence:\n%s", limit, body)
		}
		if !strings.Contains(body, `| dns | failed: preview stack dns: \| bad program |`) {
			t.Fatalf("limit %d: the failed stack's row is broken:\n%s", limit, body)
		}
		rec, ok := parseRecord(body)
		if !ok || rec.head != report.Plan.Head || rec.tree != "t" || rec.stacks["web prod"].Steps != "s1" ||
			rec.stacks["db"].Create != 2 || rec.stacks["dns"].Steps != "failed" {
			t.Fatalf("limit %d: record read back = %+v, %v", limit, rec, ok)
		}
	}
}
