package workflows

import (
	"fmt"
	"strings"

	"github.com/changeops/changeops/activities"
)

// policyDenied says why the policies deny the plans ("" when they do
// not): every violation, each with its stack, rule and resource, so the
// run's reason tells the author what to change. The results are bounded
// by the activity that evaluated them.
func policyDenied(plans []activities.PlanResult) string {
	var lines []string
	omitted := 0
	for _, p := range plans {
		if p.Policy == nil {
			continue
		}
		for _, v := range p.Policy.Deny {
			lines = append(lines, fmt.Sprintf("stack %s: %s", p.Stack, v))
		}
		if len(p.Policy.Deny) > 0 {
			omitted += p.Policy.Omitted
		}
	}
	if len(lines) == 0 {
		return ""
	}
	reason := "denied by policy before anyone was asked: " + strings.Join(lines, "; ")
	if omitted > 0 {
		reason += fmt.Sprintf("; and %d more results (changeops status shows the plans)", omitted)
	}
	return reason
}

// policyNotes are a plan's policy results as a notification shows them.
func policyNotes(p activities.PlanResult) (deny, warn, require []string) {
	if p.Policy == nil {
		return nil, nil, nil
	}
	for _, v := range p.Policy.Deny {
		deny = append(deny, v.String())
	}
	for _, v := range p.Policy.Warn {
		warn = append(warn, v.String())
	}
	for _, r := range p.Policy.Require {
		require = append(require, r.String())
	}
	return deny, warn, require
}
