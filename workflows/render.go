package workflows

import (
	"fmt"
	"strings"

	"github.com/changeops/changeops/activities"
)

// Plain-text summaries for notifications and current details.

func planSummary(plans []activities.PlanResult) string {
	var b strings.Builder
	for _, p := range plans {
		fmt.Fprintf(&b, "%s: +%d ~%d ±%d -%d (=%d)", p.Stack, p.Create, p.Update, p.Replace, p.Delete, p.Same)
		if p.Destructive() {
			b.WriteString(" destructive")
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func applySummary(applies []activities.ApplyResult) string {
	var b strings.Builder
	for _, p := range applies {
		fmt.Fprintf(&b, "%s: +%d ~%d ±%d -%d (=%d), update #%d\n", p.Stack, p.Create, p.Update, p.Replace, p.Delete, p.Same, p.UpdateVersion)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func checkSummary(v activities.VerifyResult) string {
	var b strings.Builder
	for _, c := range v.Results {
		mark := "ok"
		if !c.Passed {
			mark = "FAILED"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", mark, c.Check, c.Detail)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func failedChecks(v activities.VerifyResult) string {
	var out []string
	for _, c := range v.Results {
		if !c.Passed {
			out = append(out, fmt.Sprintf("%s: %s", c.Check, c.Detail))
		}
	}
	return strings.Join(out, "; ")
}
