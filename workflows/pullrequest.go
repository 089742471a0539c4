package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/notify"
)

// approvedOnPullRequest decides the run from the approvals on its pull
// request (approval: pull-request), when the run plans exactly what the
// pull request was previewed with: what the reviewers saw is what is
// applied. Otherwise, or with too few approvals that count, the run asks
// as a manual one does. The approvals are read by an activity with
// changeops' forge token, so Temporal access alone cannot supply them.
func (r *run) approvedOnPullRequest(ctx workflow.Context) bool {
	p, ap := r.st.Previewed, &r.st.Approval
	if r.batch != nil {
		// A batch's plan is no pull request's preview: its reviewers saw
		// one change, not the batch (docs/batching.md#approvals).
		r.detail(ctx, "the batch's plan is not what any one pull request previewed; asking here")
		return false
	}
	if p == nil || !p.Same || p.Number == 0 {
		return false
	}
	if workflow.GetVersion(ctx, VersionPullRequestApprovals, workflow.DefaultVersion, 1) != 1 {
		return false
	}
	var res activities.PullApprovalsResult
	err := workflow.ExecuteActivity(withOptions(ctx, gitOptions(fmt.Sprintf("Read the approvals of #%d", p.Number))),
		a.PullApprovals, activities.PullApprovalsInput{
			Repo: r.in.Repo, Number: p.Number, Head: p.Head, Commit: r.in.Commit,
			Approvers: ap.Approvers, FourEyes: ap.FourEyes, Needed: ap.PullRequest,
		}).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("read the pull request's approvals", "number", p.Number, "error", err)
		return false
	}
	r.st.PullApprovals = &res
	if !res.Enough {
		detail := fmt.Sprintf("%d of %d approvals on #%d count", len(res.Approvers), ap.PullRequest, p.Number)
		if len(res.Refused) > 0 {
			detail += ": " + strings.Join(res.Refused, "; ")
		}
		r.detail(ctx, detail+"; asking here")
		return false
	}
	d := &Decision{Approve: true, User: strings.Join(res.Approvers, ", "), Method: gate.MethodForge,
		Comment: fmt.Sprintf("approved on pull request #%d, as previewed", p.Number), At: workflow.Now(ctx)}
	r.st.Decision = d
	if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeApprover.ValueSet(res.Approvers[0])); err != nil {
		workflow.GetLogger(ctx).Warn("upsert approver", "error", err)
	}
	r.notify(ctx, notify.Event{Kind: notify.KindDecision, Step: fmt.Sprintf("approved by %s on #%d", d.User, p.Number), Detail: d.Comment})
	return true
}
