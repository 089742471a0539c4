package workflows

import (
	"fmt"
	"slices"
	"strings"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/slackui"
)

// approvalFor derives what a run asks of approvers from the stacks' policies
// and their plans: manual stacks always ask; on-destructive stacks ask when
// their plan replaces or deletes; auto stacks never ask. A person must be
// allowed on every stack that asks, and four eyes on any of them binds the
// whole change. The shortest approval timeout applies.
func approvalFor(stacks []config.Stack, plans []activities.PlanResult) Approval {
	destructive := map[string]bool{}
	for _, p := range plans {
		destructive[p.Stack] = p.Destructive()
	}
	var a Approval
	for _, s := range stacks {
		asks := s.Approval == config.ApprovalManual ||
			(s.Approval == config.ApprovalOnDestructive && destructive[s.Name])
		if !asks {
			continue
		}
		if !a.Required {
			a.Required = true
			a.Approvers = slices.Clone(s.Approvers)
			a.Timeout = s.ApprovalTimeout.D()
		} else {
			a.Approvers = slices.DeleteFunc(a.Approvers, func(u string) bool { return !slices.Contains(s.Approvers, u) })
			a.Timeout = min(a.Timeout, s.ApprovalTimeout.D())
		}
		a.Stacks = append(a.Stacks, s.Name)
		a.FourEyes = a.FourEyes || s.FourEyes
	}
	slices.Sort(a.Approvers)
	return a
}

// isAuthor says whether user names the commit's author: the user ID given
// to --as or by Slack is compared with the author's name, email and the
// email's local part, ignoring case.
func isAuthor(user string, c activities.Commit) bool {
	local, _, _ := strings.Cut(c.AuthorEmail, "@")
	for _, id := range []string{c.AuthorName, c.AuthorEmail, local} {
		if id != "" && strings.EqualFold(user, id) {
			return true
		}
	}
	return false
}

// validateDecision is the one rule for signals and updates alike: only a
// waiting run can be decided, once, by an allowed approver, and with four
// eyes never approved by its author.
func validateDecision(st *Status, req DecisionRequest) error {
	short := shortSHA(st.Commit.SHA)
	switch {
	case strings.TrimSpace(req.User) == "":
		return fmt.Errorf("a decision needs a user: pass --as USER")
	case st.Decision != nil:
		return fmt.Errorf("%s was already decided by %s", st.Subject(), st.Decision.User)
	case st.State != StateAwaitingApproval:
		return fmt.Errorf("%s is %s, not awaiting approval", st.Subject(), st.State)
	case !allowed(st.Approval.Approvers, req):
		return fmt.Errorf("%s may not decide %s: approvers for %s are %s",
			req.User, st.Subject(), strings.Join(st.Approval.Stacks, ", "), strings.Join(st.Approval.Approvers, ", "))
	case req.Approve && st.Approval.FourEyes && (isAuthor(req.User, st.Commit) || isAuthor(req.Email, st.Commit)):
		return fmt.Errorf("%s wrote commit %s and %s four eyes: another approver must approve",
			req.User, short, stacksRequire(st.Approval.Stacks))
	}
	return nil
}

// allowed says whether the request's user may decide: listed by name, or
// through a listed Slack user group (Via) whose membership the Slack app
// checked; only a group ID (S…) can stand for its members.
func allowed(approvers []string, req DecisionRequest) bool {
	return slices.Contains(approvers, req.User) ||
		(slackui.IsGroupID(req.Via) && slices.Contains(approvers, req.Via))
}

// stacksRequire reads "stack web requires" or "stacks api, web require".
func stacksRequire(stacks []string) string {
	if len(stacks) == 1 {
		return "stack " + stacks[0] + " requires"
	}
	return "stacks " + strings.Join(stacks, ", ") + " require"
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
