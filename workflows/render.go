package workflows

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/internal/notify"
)

// Plain-text summaries for notifications and current details. They build
// strings with Sprintf, not Fprintf: workflowcheck cannot tell a
// strings.Builder from a file, and CI runs it on this package.

func planSummary(plans []activities.PlanResult) string {
	var b strings.Builder
	for _, p := range plans {
		b.WriteString(fmt.Sprintf("%s: +%d ~%d ±%d -%d (=%d)", p.Stack, p.Create, p.Update, p.Replace, p.Delete, p.Same))
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
		b.WriteString(fmt.Sprintf("%s: +%d ~%d ±%d -%d (=%d), %s\n", p.Stack, p.Create, p.Update, p.Replace, p.Delete, p.Same, updateName(p)))
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
		b.WriteString(fmt.Sprintf("%s %s: %s\n", mark, c.Check, c.Detail))
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

// notePlans is the plans as a notification carries them: counts, and as
// much of each diff as a chat message can show (the whole plan stays in
// the run's status), so notification payloads stay small in history.
func notePlans(plans []activities.PlanResult) []notify.Plan {
	var out []notify.Plan
	for _, p := range plans {
		n := notify.Plan{Stack: p.Stack, Create: p.Create, Update: p.Update, Replace: p.Replace, Delete: p.Delete, Same: p.Same,
			Diff: p.Diff, DiffTruncated: p.DiffTruncated}
		n.Denied, n.Warnings, n.Requires = policyNotes(p)
		if p.Policy != nil {
			n.PolicyDigest = p.Policy.Digest
		}
		if utf8.RuneCountInString(n.Diff) > notify.MaxDiff {
			n.Diff, n.DiffTruncated = string([]rune(n.Diff)[:notify.MaxDiff]), true
		}
		out = append(out, n)
	}
	return out
}

func noteChecks(v activities.VerifyResult) []notify.Check {
	var out []notify.Check
	for _, c := range v.Results {
		out = append(out, notify.Check{Stack: v.Stack, Name: c.Check, Passed: c.Passed, Detail: c.Detail})
	}
	return out
}

// updateName names the Pulumi update an apply made: by number where the
// backend numbers updates, else by its start time (DIY backends).
func updateName(p activities.ApplyResult) string {
	if p.UpdateVersion > 0 || p.UpdateStarted == "" {
		return fmt.Sprintf("update #%d", p.UpdateVersion)
	}
	return "update of " + p.UpdateStarted
}
