package workflows

import (
	"fmt"
	"slices"
	"strings"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/slackui"
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

// withPolicy adds the approvals the plans' policies require to what the
// stacks ask (approvalFor): the stacks' approvers become one requirement
// (when they ask), each policy's require another, deduplicated to the
// largest count per set of approvers. A run that needs any of them asks
// even when its stacks would not (an on-destructive stack with a plan
// that only changes tags), and four eyes binds every approval then: a
// policy that asks for more eyes never counts the author's. The timeout
// is then the shortest of all the stacks'.
func withPolicy(ap *Approval, stacks []config.Stack, plans []activities.PlanResult) {
	var reqs []Requirement
	if ap.Required {
		if len(ap.Approvers) == 0 {
			return // no common approver: the run fails as before
		}
		reqs = append(reqs, Requirement{Who: "an approver of " + strings.Join(ap.Stacks, ", "), Approvers: ap.Approvers, Count: 1})
	}
	policyAsks := false
	for _, p := range plans {
		if p.Policy == nil {
			continue
		}
		for _, q := range p.Policy.Require {
			who := "group " + q.Group
			if q.Group == "" {
				who = strings.Join(q.People, ", ")
			}
			approvers := slices.Sorted(slices.Values(q.Approvers))
			why := fmt.Sprintf("%s policy %s of stack %s", q.Origin, q.Rule, p.Stack)
			if q.Message != "" {
				why += ": " + q.Message
			}
			policyAsks = true
			i := slices.IndexFunc(reqs, func(r Requirement) bool { return slices.Equal(r.Approvers, approvers) })
			switch {
			case i < 0:
				reqs = append(reqs, Requirement{Who: who, Approvers: approvers, Count: q.Count, Why: why})
			case q.Count > reqs[i].Count:
				reqs[i].Count, reqs[i].Why = q.Count, why
			}
		}
	}
	if !policyAsks {
		return
	}
	if !ap.Required {
		ap.Timeout = 0
		for _, s := range stacks {
			if ap.Timeout == 0 || s.ApprovalTimeout.D() < ap.Timeout {
				ap.Timeout = s.ApprovalTimeout.D()
			}
		}
	}
	ap.Required, ap.FourEyes, ap.Requirements = true, true, reqs
	var all []string
	for _, q := range reqs {
		all = append(all, q.Approvers...)
	}
	slices.Sort(all)
	ap.Approvers = slices.Compact(all)
}

// countsToward lists the requirements an approval by the claim's signer
// counts toward: their person, Slack user, or the Slack user group the
// Slack app vouched for. It reads only the claim and the requirements,
// so the replayed handler counts as the validator did.
func countsToward(reqs []Requirement, c gate.Claim, method string) []int {
	var out []int
	for i, q := range reqs {
		if (c.Person != "" && slices.Contains(q.Approvers, c.Person)) ||
			(c.SlackUser != "" && slices.Contains(q.Approvers, c.SlackUser)) ||
			(method == gate.MethodSlack && slackui.IsGroupID(c.Via) && slices.Contains(q.Approvers, c.Via)) {
			out = append(out, i)
		}
	}
	return out
}

// missing are the requirements the approvals so far do not meet, each
// with how many approvals it still needs.
func missing(ap Approval, approvals []Decision) []Requirement {
	var out []Requirement
	for i, q := range ap.Requirements {
		n := 0
		for _, d := range approvals {
			if slices.Contains(d.Counts, i) {
				n++
			}
		}
		if n < q.Count {
			q.Count -= n
			out = append(out, q)
		}
	}
	return out
}

// refuseApproval is the rule for one approval of several: from someone
// who has not approved yet, who counts toward a requirement still
// missing. It names what is missing, so a non-member hears which group.
func refuseApproval(st *Status, c gate.Claim, method string) error {
	who := c.Who()
	for _, d := range st.Approvals {
		if d.User == who {
			return fmt.Errorf("%s already approved %s; it still needs %s", who, st.Subject(), describe(missing(st.Approval, st.Approvals)))
		}
	}
	left := missing(st.Approval, st.Approvals)
	counts := countsToward(st.Approval.Requirements, c, method)
	for _, q := range left {
		i := slices.IndexFunc(st.Approval.Requirements, func(r Requirement) bool { return slices.Equal(r.Approvers, q.Approvers) })
		if slices.Contains(counts, i) {
			return nil
		}
	}
	return fmt.Errorf("%s may not approve %s: it still needs %s, and %s is not among them", who, st.Subject(), describe(left), who)
}

func describe(reqs []Requirement) string {
	var parts []string
	for _, q := range reqs {
		parts = append(parts, q.String())
	}
	return strings.Join(parts, "; ")
}

// approvedBy names who approved: every approval when several were needed.
func approvedBy(approvals []Decision, last *Decision) string {
	if len(approvals) < 2 || !last.Approve {
		return last.User
	}
	var who []string
	for _, d := range approvals {
		who = append(who, d.User)
	}
	return strings.Join(who, ", ")
}
