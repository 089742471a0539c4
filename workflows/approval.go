package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/slackui"
)

// approvalFor derives what a run asks of approvers from the stacks' policies
// and their plans: manual stacks always ask; on-destructive stacks ask when
// their plan replaces or deletes; auto stacks never ask. A person must be
// allowed on every stack that asks, and four eyes on any of them binds the
// whole change. The shortest approval timeout applies. pull-request stacks
// ask as manual ones do, unless approvals on the pull request make the
// decision (pullrequest.go): only when every stack that asks is one.
func approvalFor(stacks []config.Stack, plans []activities.PlanResult) Approval {
	destructive := map[string]bool{}
	for _, p := range plans {
		destructive[p.Stack] = p.Destructive()
	}
	var a Approval
	onlyPullRequests := true
	for _, s := range stacks {
		asks := s.Approval == config.ApprovalManual || s.Approval == config.ApprovalPullRequest ||
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
		onlyPullRequests = onlyPullRequests && s.Approval == config.ApprovalPullRequest
		a.PullRequest = max(a.PullRequest, s.PullRequestApprovals)
	}
	if !onlyPullRequests {
		a.PullRequest = 0
	}
	slices.Sort(a.Approvers)
	return a
}

// isAuthor is the legacy four-eyes rule (validateLegacy): the user ID given
// to --as or by Slack compared with the author's name, email and the
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

// Verifier authenticates a signed decision (a *gate.Gate: the worker's
// people directory and Slack key).
type Verifier interface {
	Verify(s gate.Signed, now time.Time) (gate.Identity, error)
}

// maxComment bounds a decision's comment: it reaches the status, the
// audit and Slack.
const maxComment = 2000

// authorize is the rule for every decision a run receives: signed by a
// path that authenticated a person (gate), for this run and the plan it
// shows, while it waits, once, by an allowed approver, and under four
// eyes by nobody linked to the commit's author or committer. It runs in
// the Update's validator only, in the worker process: it reads the
// worker's current people and Slack key, which are not in the history
// and may change, and validators are not replayed.
func authorize(st *Status, g Verifier, req DecisionRequest, now time.Time) error {
	s := req.Signed
	if s == nil {
		return errors.New("the decision is not signed: decide with the Slack buttons or with `changeops approve`/`reject` and your SSH key; access to Temporal alone cannot approve")
	}
	id, err := g.Verify(*s, now)
	if err != nil {
		return err
	}
	c := s.Claim
	who := c.Who()
	switch {
	case c.Action != "":
		// An override vote or a freeze is signed for its own use only.
		return fmt.Errorf("the claim's action is %q, so it is no decision: decide with changeops approve or reject", c.Action)
	case len(c.Comment) > maxComment:
		return fmt.Errorf("the comment is %d bytes; keep it under %d (it goes into the run's status and messages)", len(c.Comment), maxComment)
	case c.WorkflowID != st.ID || c.RunID != st.RunID:
		return fmt.Errorf("the decision was signed for run %s (%s), not this one (%s, %s)", c.WorkflowID, c.RunID, st.ID, st.RunID)
	case st.BatchPending != nil && st.State == contract.StateQueued:
		p := st.BatchPending
		return fmt.Errorf("%s is in the batch of %d changes that run %s (commit %s) deploys, and one decision there covers them all: decide that run, e.g. changeops approve %s",
			st.Subject(), p.Changes, p.Leader, p.LeaderCommit, p.Leader)
	case st.Decision != nil:
		return fmt.Errorf("%s was already decided by %s", st.Subject(), st.Decision.User)
	case st.State != contract.StateAwaitingApproval:
		return fmt.Errorf("%s is %s, not awaiting approval", st.Subject(), st.State)
	case c.Plan != st.PlanDigest():
		return fmt.Errorf("the decision is for another plan of %s than the one awaiting approval: the run planned again, look at the new plan and decide again", st.Subject())
	case len(st.Approval.Requirements) > 0 && c.Approve:
		// Several approvals: each must count toward one still missing, by
		// what the claim says (the replayed handler counts from the claim
		// alone; the gate refused Slack fields a key's claim cannot own).
		if err := refuseApproval(st, c, id.Method); err != nil {
			if id.Allowed(st.Approval.Approvers, c.Via) {
				err = fmt.Errorf("%w (%s is listed under another of their identities, such as a Slack user ID: approve with the Slack button, or list them by their people entry's name)", err, who)
			}
			return err
		}
	case !id.Allowed(st.Approval.Approvers, c.Via):
		return fmt.Errorf("%s may not decide %s: approvers for %s are %s",
			who, st.Subject(), strings.Join(st.Approval.Stacks, ", "), strings.Join(st.Approval.Approvers, ", "))
	}
	if c.Approve && st.Approval.FourEyes {
		if id.Method == gate.MethodSlack && c.SlackEmail == "" {
			return fmt.Errorf("%s needs four eyes, and the Slack decision of %s carries no email to compare with the commit's: the Slack app needs the users:read.email scope", st.Subject(), who)
		}
		if role, link := linkedTo(id, st.Commit); link != "" {
			return fmt.Errorf("%s is linked to the %s of commit %s by %s, and %s four eyes: another approver must approve",
				who, role, contract.ShortSHA(st.Commit.SHA), link, stacksRequire(st.Approval.Stacks))
		}
		// One decision covers a batch: four eyes holds against every
		// change in it (docs/batching.md#approvals).
		for _, bc := range st.BatchCommits {
			if role, link := linkedTo(id, bc); link != "" && bc.SHA != st.Commit.SHA {
				return fmt.Errorf("%s is linked to the %s of commit %s (%q), one of the %d changes this decision covers, by %s, and %s four eyes: another approver must approve the batch",
					who, role, contract.ShortSHA(bc.SHA), bounded(bc.Subject, 80), len(st.BatchCommits), link, stacksRequire(st.Approval.Stacks))
			}
		}
	}
	return nil
}

// linkedTo says whether the identity is linked to the commit's author or
// committer: which, and how ("email x"); link is empty when neither.
func linkedTo(id gate.Identity, c activities.Commit) (role, link string) {
	for _, g := range []struct{ role, name, email string }{
		{"author", c.AuthorName, c.AuthorEmail},
		{"committer", c.CommitterName, c.CommitterEmail},
	} {
		if link := id.LinkedTo(g.name, g.email); link != "" {
			return g.role, link
		}
	}
	return "", ""
}

// validateLegacy is the rule runs applied to unsigned decisions before
// decisions were authenticated; only replays of those histories use it.
func validateLegacy(st *Status, req DecisionRequest) error {
	short := contract.ShortSHA(st.Commit.SHA)
	switch {
	case strings.TrimSpace(req.User) == "":
		return fmt.Errorf("a decision needs a user: pass --as USER")
	case st.Decision != nil:
		return fmt.Errorf("%s was already decided by %s", st.Subject(), st.Decision.User)
	case st.State != contract.StateAwaitingApproval:
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
