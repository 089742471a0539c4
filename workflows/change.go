package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/notify"
)

// a is the nil receiver through which activities are named.
var a *activities.Activities

// Workflows are changeops' workflow definitions with what their decision
// validators need from the worker that runs them.
type Workflows struct {
	// Gate authenticates decisions; nil refuses every decision.
	Gate Verifier
}

// Change is one merged commit's run: inspect, plan, approve, apply,
// verify, roll back (docs/runs.md).
func (w Workflows) Change(ctx workflow.Context, in ChangeInput) (ChangeResult, error) {
	r := &run{in: in, gate: w.Gate}
	if err := r.setup(ctx); err != nil {
		return ChangeResult{}, err
	}
	r.listenForBatch(ctx)
	r.localSteps(ctx)
	res := r.change(ctx)
	r.endBatch(ctx, res)
	r.releaseQueues(ctx, res)
	r.out.drain(ctx)
	// An update accepted just before the end must get its answer.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return res, err
	}
	return res, nil
}

// run is one run of the Change or the Drift workflow: its status, the
// stacks it holds and its Slack thread. change and drift are its two paths
// (drift.go); the decisions, queues, notifications and rollback are shared.
type run struct {
	gate   Verifier
	out    *outbox
	in     ChangeInput
	st     Status
	stacks []config.Stack
	// queued is set once the run entered its stacks' queues.
	queued bool
	// replan, set by apply, says why the approved plan no longer holds:
	// deploy plans and asks again.
	replan string
	// lastGood is each held stack's last good state, from its grant.
	lastGood map[string]*contract.Deployed
	// forge: the repository has a forge, so plans are compared with the
	// preview of the pull request the commit merged.
	forge bool
	// batch are the queued runs it deploys with its own commit (batch.go).
	batch *batch
	// local: the run's short steps are local activities (local.go).
	local bool
}

func (r *run) setup(ctx workflow.Context) error {
	r.out = newOutbox(ctx)
	r.st.ID = workflow.GetInfo(ctx).WorkflowExecution.ID
	r.st.RunID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	r.st.Branch = r.in.Branch
	r.st.Commit.SHA = r.in.Commit
	if err := workflow.SetQueryHandler(ctx, contract.StatusQuery, func() (Status, error) { return r.st, nil }); err != nil {
		return err
	}
	// The validator authenticates (authorize); the handler does not check
	// again, since an accepted Update is in the history and its handler
	// is replayed without the validator, while the check reads the
	// worker's current people and keys, which replay must not depend on.
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.DecisionUpdate,
		func(ctx workflow.Context, req DecisionRequest) (DecisionResult, error) {
			r.record(ctx, req)
			return DecisionResult{State: r.st.State}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req DecisionRequest) error {
			return authorize(&r.st, r.gate, req, workflow.Now(ctx))
		}},
	); err != nil {
		return err
	}
	// A signal cannot be refused to its sender, nor checked outside the
	// replayed handler, so since decisions are authenticated every signal
	// is refused and recorded; runs from before replay their signals by
	// the old rule.
	// Each signal asks its own version: the SDK keeps a change ID's first
	// answer for the whole run, so one ID would let a run that took a
	// signal before the upgrade judge every later signal by the old rule.
	decisions := workflow.GetSignalChannel(ctx, contract.DecisionSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for n := 1; ; n++ {
			var req DecisionRequest
			decisions.Receive(ctx, &req)
			err := errors.New("decisions by signal are refused: a signal cannot be authenticated; decide with the Slack buttons or `changeops approve`")
			if workflow.GetVersion(ctx, fmt.Sprintf("%s%d", VersionSignedDecisionPrefix, n), workflow.DefaultVersion, 1) == workflow.DefaultVersion {
				err = validateLegacy(&r.st, req)
			}
			if err != nil {
				r.refuse(err.Error())
				workflow.GetLogger(ctx).Warn("decision refused", "reason", err.Error())
				continue
			}
			r.record(ctx, req)
		}
	})
	return nil
}

// maxRefusals bounds the refusals a run keeps (the newest): a flood of
// signals must not make its status too big to query.
const maxRefusals = 20

func (r *run) refuse(reason string) {
	r.st.Refusals = append(r.st.Refusals, reason)
	if n := len(r.st.Refusals); n > maxRefusals {
		r.st.Refusals = r.st.Refusals[n-maxRefusals:]
	}
}

// record keeps an accepted decision. A signed one is recorded from its
// claim, which the validator verified.
func (r *run) record(ctx workflow.Context, req DecisionRequest) {
	d := &Decision{Approve: req.Approve, User: req.User, Comment: req.Comment, At: workflow.Now(ctx), Via: req.Via}
	if s := req.Signed; s != nil {
		d = &Decision{Approve: s.Claim.Approve, User: s.Claim.Who(), Comment: s.Claim.Comment, At: workflow.Now(ctx),
			Method: s.Method, Key: s.Fingerprint}
		if s.Method == gate.MethodSlack {
			d.Via = s.Claim.Via // only the Slack app vouches for a group
		}
	}
	// When policies require several approvals, an approval counts until
	// all are met; only then, or at a rejection, is the run decided.
	if s := req.Signed; s != nil && d.Approve && len(r.st.Approval.Requirements) > 0 {
		d.Counts = countsToward(r.st.Approval.Requirements, s.Claim, s.Method)
		r.st.Approvals = append(r.st.Approvals, *d)
		if left := missing(r.st.Approval, r.st.Approvals); len(left) > 0 {
			r.notify(ctx, notify.Event{Kind: notify.KindApprovalCounted, Step: "approved by " + d.User, Detail: "still needs " + describe(left)})
			return
		}
	}
	r.st.Decision = d
	if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeApprover.ValueSet(d.User)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert approver", "error", err)
	}
}

func (r *run) change(ctx workflow.Context) ChangeResult {
	// Each step either hands on to the next (ok) or ends the run with res.
	for _, step := range []func(workflow.Context) (res ChangeResult, ok bool){
		r.inspect, // 1. Inspect the commit: what changed, which stacks.
		r.queue,   // 2. Hold the stacks' queues; learn the effective tree.
		r.deploy,  // 3–5. Plan, approve, wait for the window, apply.
		r.verifyAll,
	} {
		if res, ok := step(ctx); !ok {
			return res
		}
	}
	// 7. Succeed.
	if b := r.st.Batch; b != nil {
		return r.finish(ctx, contract.StateSucceeded, fmt.Sprintf("deployed in batch with %s: led the batch of %d changes, applied together at %s and verified",
			shortList(b.Members[1:]), len(b.Members), contract.ShortSHA(b.Head)))
	}
	return r.finish(ctx, contract.StateSucceeded, "applied and verified")
}

// inspect is step 1: the commit, the paths it changed and the stacks they
// touch. A commit that touches no stack ends here.
func (r *run) inspect(ctx workflow.Context) (ChangeResult, bool) {
	short := contract.ShortSHA(r.in.Commit)
	r.enter(ctx, contract.StatePlanning, fmt.Sprintf("Inspecting %s…", short))
	var insp activities.InspectResult
	err := r.short(ctx, gitOptions(fmt.Sprintf("Inspect %s", short)),
		a.Inspect, activities.InspectInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: r.in.Commit}).Get(ctx, &insp)
	if err != nil {
		return r.fail(ctx, "inspect commit "+short, err), false
	}
	r.st.Commit = insp.Commit
	r.st.ChangedPaths = insp.ChangedPaths
	r.stacks = insp.Stacks
	r.forge = insp.Forge
	for _, s := range insp.Stacks {
		r.st.Stacks = append(r.st.Stacks, s.Name)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		contract.ChangeStacks.ValueSet(r.st.Stacks),
		contract.ChangeAuthor.ValueSet(insp.Commit.AuthorEmail),
	); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
	changed := strings.Join(insp.ChangedPaths, "\n")
	if more := insp.ChangedCount - len(insp.ChangedPaths); more > 0 {
		changed += fmt.Sprintf("\n… and %d more", more)
	}
	r.notify(ctx, notify.Event{Kind: notify.KindReceived, Step: "received", Detail: changed})
	if len(r.stacks) == 0 {
		return r.finish(ctx, contract.StateNoOp, "the commit touches no configured stack"), false
	}
	return ChangeResult{}, true
}

// queue is step 2: the stacks' queues, then the effective tree (acquire).
// Runs started before queues existed keep their recorded shape.
func (r *run) queue(ctx workflow.Context) (ChangeResult, bool) {
	if workflow.GetVersion(ctx, VersionStackQueues, workflow.DefaultVersion, 1) != 1 {
		return ChangeResult{}, true
	}
	res, ok := r.acquire(ctx)
	if ok {
		r.formBatch(ctx)
	}
	return res, ok
}

// deploy is steps 3 to 5: plan, approve, wait for the stacks' change
// window (window.go), apply what was approved; and again, up to
// maxPlanRounds, while the plan changes between approval and apply.
func (r *run) deploy(ctx workflow.Context) (ChangeResult, bool) {
	for round := 1; ; round++ {
		if res, ok := r.plan(ctx); !ok {
			return res, false
		}
		if r.batch != nil {
			if why := r.batchAlone(ctx); why != "" {
				r.dropBatch(ctx, why)
				round-- // the batch's plan was not a round of this run's own
				continue
			}
		}
		// A plan with nothing to do needs no decision: a revert commit's
		// own run, after its rollback restored the stacks, ends here.
		if nothingToDo(r.st.Plans) && workflow.GetVersion(ctx, VersionSkipEmptyPlans, workflow.DefaultVersion, 1) == 1 {
			return r.finish(ctx, contract.StateNoOp, "the stacks already match this commit"), false
		}
		if reason := policyDenied(r.st.Plans); reason != "" {
			return r.finish(ctx, contract.StatePolicyDenied, reason), false
		}
		if res, ok := r.approve(ctx); !ok {
			return res, false
		}
		if res, ok := r.awaitWindow(ctx); !ok {
			return res, false
		}
		if res, ok := r.apply(ctx); !ok {
			return res, false
		}
		if r.replan == "" {
			r.notify(ctx, notify.Event{Kind: notify.KindApplied, Step: "applied", Detail: applySummary(r.st.Applies)})
			return ChangeResult{}, true
		}
		if round == maxPlanRounds {
			return r.finish(ctx, contract.StateFailed, fmt.Sprintf("the plan kept changing between approval and apply (%d rounds): %s", round, r.replan)), false
		}
		r.notify(ctx, notify.Event{Kind: notify.KindPlanChanged, Step: "plan changed", Detail: r.replan + "; planning again"})
		r.st.Plans, r.st.Applies, r.st.Decision, r.st.Approvals, r.replan = nil, nil, nil, nil, ""
	}
}

// verifyAll is step 6: every stack's checks; a failure rolls back.
func (r *run) verifyAll(ctx workflow.Context) (ChangeResult, bool) {
	r.enter(ctx, contract.StateVerifying, fmt.Sprintf("Verifying %s…", strings.Join(r.st.Stacks, ", ")))
	for _, s := range r.stacks {
		if reason, ok := r.verify(ctx, s, r.commit(), r.st.Undone); !ok {
			return r.changeFailed(ctx, reason), false
		}
	}
	return ChangeResult{}, true
}

// maxPlanRounds bounds how often a run plans again because the plan
// changed between approval and apply.
const maxPlanRounds = 3

// plan previews every stack at the run's effective tree.
func (r *run) plan(ctx workflow.Context) (ChangeResult, bool) {
	short := contract.ShortSHA(r.commit())
	if r.st.State != contract.StatePlanning { // back from the queue, or a changed plan
		r.enter(ctx, contract.StatePlanning, fmt.Sprintf("Planning %s…", strings.Join(r.st.Stacks, ", ")))
	}
	for _, s := range r.stacks {
		r.detail(ctx, fmt.Sprintf("Previewing %s at %s…", s.Name, short))
		var plan activities.PlanResult
		err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Preview %s at %s", s.Name, short), 30*time.Minute, s)),
			a.Preview, r.stackInput(ctx, s)).Get(ctx, &plan)
		if err != nil && r.batch != nil {
			// A member's program may be what fails: each plans alone.
			r.dropBatch(ctx, fmt.Sprintf("planning the batch at %s failed (%s)", short, errorMessage(err)))
			return r.plan(ctx)
		}
		if err != nil {
			return r.fail(ctx, "plan "+s.Name, err), false
		}
		r.st.Plans = append(r.st.Plans, plan)
	}
	detail := planSummary(r.st.Plans)
	// Runs of repositories without a forge, and runs recorded before
	// previews, compare nothing.
	if r.forge && workflow.GetVersion(ctx, VersionComparePreview, workflow.DefaultVersion, 1) == 1 {
		if d := r.comparePreview(ctx); d != "" {
			detail += "\n" + d
		}
	}
	r.notify(ctx, notify.Event{Kind: notify.KindPlanned, Step: "plan ready", Detail: detail, Plans: notePlans(r.st.Plans)})
	return ChangeResult{}, true
}

// comparePreview says whether the plans are what the pull request the
// commit merged was previewed with ("as previewed on #12"), or what
// differs. A forge that does not answer costs the sentence, not the run.
func (r *run) comparePreview(ctx workflow.Context) string {
	var cmp activities.PreviewComparison
	err := workflow.ExecuteActivity(withOptions(ctx, notifyOptions("Compare with the pull request's preview")),
		a.ComparePreview, activities.ComparePreviewInput{Repo: r.in.Repo, Commit: r.in.Commit, Plans: r.st.Plans}).Get(ctx, &cmp)
	if err != nil {
		workflow.GetLogger(ctx).Warn("compare with the pull request's preview", "error", err)
		return ""
	}
	r.st.Previewed = &cmp
	return cmp.Described()
}

// apply runs up on every stack, each checked against its approved plan.
// A stack that would now do something else is not applied: r.replan says
// what, and deploy plans again.
func (r *run) apply(ctx workflow.Context) (ChangeResult, bool) {
	short := contract.ShortSHA(r.commit())
	r.enter(ctx, contract.StateApplying, fmt.Sprintf("Applying %s…", strings.Join(r.st.Stacks, ", ")))
	r.notify(ctx, notify.Event{Kind: notify.KindApplying, Step: "applying"})
	for i, s := range r.stacks {
		// Each stack's up starts inside the window: the one before it may
		// have taken hours, and a freeze may have begun meanwhile.
		if i > 0 {
			if res, ok := r.awaitWindow(ctx); !ok {
				return res, false
			}
			if r.st.State != contract.StateApplying {
				r.enter(ctx, contract.StateApplying, fmt.Sprintf("Applying %s…", strings.Join(r.st.Stacks, ", ")))
			}
		}
		r.detail(ctx, fmt.Sprintf("Applying %s at %s…", s.Name, short))
		in := r.stackInput(ctx, s)
		// Under `auto` any plan is approved, so there is nothing to hold
		// the apply to (and no second preview to pay for); `manual` and
		// `on-destructive` approved this plan, and only this one.
		if s.Approval != config.ApprovalAuto {
			in.Approved = r.st.Plans[i].Steps
		}
		var out activities.ApplyResult
		started := workflow.Now(ctx)
		err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Apply %s at %s", s.Name, short), 2*time.Hour, s)),
			a.Apply, in).Get(ctx, &out)
		observe(ctx, MetricApplyDuration, started, map[string]string{"stack": s.Name})
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrPlanChanged {
			r.replan = appErr.Message()
			return ChangeResult{}, true
		}
		if err != nil {
			r.st.Error = fmt.Sprintf("apply %s: %s", s.Name, errorMessage(err))
			// An up that never began changed nothing: with no stack
			// applied before it, there is nothing to roll back, and a
			// revert would undo a change that was never deployed.
			if len(r.st.Applies) == 0 && !updateBegan(err) &&
				workflow.GetVersion(ctx, VersionUnappliedNoRollback, workflow.DefaultVersion, 1) == 1 {
				return r.finish(ctx, contract.StateFailed, r.st.Error+"; nothing was applied, so nothing is rolled back"), false
			}
			if r.batch != nil && r.batch.asks && !treesFault(err) {
				r.batch.engineFailed = true // bisecting would blame a commit for it
			}
			return r.changeFailed(ctx, r.st.Error), false
		}
		r.st.Applies = append(r.st.Applies, out)
	}
	return ChangeResult{}, true
}

// updateBegan says whether a failed Apply had begun changing resources:
// its ApplyFailure says; a failure without one (a timeout, an older
// worker) may have.
func updateBegan(err error) bool {
	var appErr *temporal.ApplicationError
	var f activities.ApplyFailure
	if errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&f) == nil {
		return f.Began
	}
	return true
}

// stackInput names a stack at the run's effective tree.
func (r *run) stackInput(ctx workflow.Context, s config.Stack) activities.StackInput {
	return activities.StackInput{RunID: r.st.ID, Stack: s, Commit: r.commit(), Undone: r.st.Undone, Notice: r.notice(ctx)}
}

func nothingToDo(plans []activities.PlanResult) bool {
	for _, p := range plans {
		if p.Changes() > 0 {
			return false
		}
	}
	return true
}

// approve waits for a decision when policy asks for one. ok is false when
// the run ends here (rejected, expired, or no one may approve).
func (r *run) approve(ctx workflow.Context) (ChangeResult, bool) {
	r.st.Approval = approvalFor(r.stacks, r.st.Plans)
	if workflow.GetVersion(ctx, VersionPolicyApprovals, workflow.DefaultVersion, 1) == 1 {
		withPolicy(&r.st.Approval, r.stacks, r.st.Plans)
	}
	ap := &r.st.Approval
	if !ap.Required {
		r.st.Decision = &Decision{Approve: true, User: "policy", Auto: true, At: workflow.Now(ctx)}
		r.notify(ctx, notify.Event{Kind: notify.KindDecision, Step: "approved by policy"})
		return ChangeResult{}, true
	}
	if len(ap.Approvers) == 0 {
		return r.finish(ctx, contract.StateFailed, fmt.Sprintf(
			"no approver is allowed on all of %s: give these stacks a common approver in the config", strings.Join(ap.Stacks, ", "))), false
	}
	// Approvals a policy requires are signed by the people they name;
	// a forge's approvals do not count toward them, so such a run asks.
	if ap.PullRequest > 0 && len(ap.Requirements) == 0 && r.approvedOnPullRequest(ctx) {
		return ChangeResult{}, true
	}
	decided, err := r.ask(ctx, notify.Ask{})
	if err != nil {
		return r.finish(ctx, contract.StateFailed, "waiting for approval: "+err.Error()), false
	}
	if !decided {
		return r.finish(ctx, contract.StateExpired, fmt.Sprintf("no decision within %s", ap.Timeout)), false
	}
	d := r.st.Decision
	if !d.Approve {
		return r.finish(ctx, contract.StateRejected, fmt.Sprintf("rejected by %s %s", d.User, quote(d.Comment))), false
	}
	r.notify(ctx, notify.Event{Kind: notify.KindDecision, Step: "approved by " + approvedBy(r.st.Approvals, d), Detail: d.Comment})
	return ChangeResult{}, true
}

// ask waits for a decision on r.st.Approval until its timeout: the run is
// awaiting-approval, and the approvers hear so with buttons labelled as
// labels says (Approve and Reject when empty). decided is false when the
// time ran out.
func (r *run) ask(ctx workflow.Context, labels notify.Ask) (decided bool, err error) {
	ap := &r.st.Approval
	ap.Deadline = workflow.Now(ctx).Add(ap.Timeout)
	r.enter(ctx, contract.StateAwaitingApproval, fmt.Sprintf("Waiting for %s until %s", strings.Join(ap.Approvers, " or "), ap.Deadline.Format(time.RFC3339)))
	labels.Approvers, labels.FourEyes, labels.Deadline = ap.Approvers, ap.FourEyes, ap.Deadline
	labels.Execution, labels.Plan, labels.Batch = r.st.RunID, r.st.PlanDigest(), r.batchLines()
	for _, q := range ap.Requirements {
		labels.Requirements = append(labels.Requirements, q.String())
	}
	r.notify(ctx, notify.Event{
		Kind: notify.KindApproval, Step: "awaiting approval",
		Detail: fmt.Sprintf("approvers: %s; expires %s", strings.Join(ap.Approvers, ", "), ap.Deadline.Format(time.RFC3339)),
		Ask:    &labels,
	})
	asked := workflow.Now(ctx)
	decided, err = workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      ap.Timeout,
		TimerOptions: workflow.TimerOptions{Summary: "approval timeout"},
	}, func() bool { return r.st.Decision != nil })
	switch {
	case err != nil:
		return false, err
	case !decided:
		observe(ctx, MetricApprovalWait, asked, map[string]string{"outcome": contract.StateExpired})
	case r.st.Decision.Approve:
		observe(ctx, MetricApprovalWait, asked, map[string]string{"outcome": "approved"})
	default:
		observe(ctx, MetricApprovalWait, asked, map[string]string{"outcome": contract.StateRejected})
	}
	return decided, nil
}

// verify runs a stack's checks until a round passes or verify_timeout is
// spent, waiting between rounds on durable timers.
func (r *run) verify(ctx workflow.Context, s config.Stack, commit string, undone []string) (string, bool) {
	if len(s.Verify) == 0 {
		return "", true
	}
	short := contract.ShortSHA(commit)
	deadline := workflow.Now(ctx).Add(s.VerifyTimeout.D())
	interval := min(max(s.VerifyTimeout.D()/10, time.Second), 30*time.Second)
	idx := len(r.st.Verifications)
	r.st.Verifications = append(r.st.Verifications, activities.VerifyResult{Stack: s.Name})
	defer observe(ctx, MetricVerifyDuration, workflow.Now(ctx), map[string]string{"stack": s.Name})
	for round := 1; ; round++ {
		r.detail(ctx, fmt.Sprintf("Verifying %s at %s (round %d)…", s.Name, short, round))
		var res activities.VerifyResult
		err := workflow.ExecuteActivity(withOptions(ctx, verifyOptions(fmt.Sprintf("Verify %s at %s", s.Name, short))),
			a.Verify, activities.VerifyInput{RunID: r.st.ID, Stack: s, Commit: commit, Undone: undone}).Get(ctx, &res)
		if err != nil {
			return fmt.Sprintf("verify %s: %s", s.Name, errorMessage(err)), false
		}
		r.st.Verifications[idx] = res
		if res.Passed {
			r.notify(ctx, notify.Event{Kind: notify.KindVerified, Step: "verified " + s.Name, Detail: checkSummary(res), Checks: noteChecks(res)})
			return "", true
		}
		if !workflow.Now(ctx).Add(interval).Before(deadline) {
			return fmt.Sprintf("verification of %s failed after %d rounds within %s: %s", s.Name, round, s.VerifyTimeout.D(), failedChecks(res)), false
		}
		timer := workflow.NewTimerWithOptions(ctx, interval, workflow.TimerOptions{Summary: "retry verification of " + s.Name})
		if err := timer.Get(ctx, nil); err != nil {
			return "verify " + s.Name + ": " + err.Error(), false
		}
	}
}

// changeFailed handles a change that reached the infrastructure and then
// failed (apply or verification): roll back (docs/runs.md, step 8). Each stack
// is put back to its last good commit and verified, git is put back with a
// revert commit, and the run ends rolled-back, or rollback-failed saying
// what is left to a person. Runs started before rollback existed
// keep their recorded ending (failed).
func (r *run) changeFailed(ctx workflow.Context, reason string) ChangeResult {
	if r.batch != nil {
		return r.batchFailed(ctx, reason)
	}
	if workflow.GetVersion(ctx, VersionRollback, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return r.finish(ctx, contract.StateFailed, reason)
	}
	r.st.Error = reason
	short := contract.ShortSHA(r.in.Commit)
	r.enter(ctx, contract.StateRollingBack, fmt.Sprintf("Rolling back %s…", short))
	r.notify(ctx, notify.Event{Kind: notify.KindRollingBack, Step: "rolling back", Detail: reason})

	// Restore the last good state of each stack, then verify it. This
	// comes before the revert commit lands so that the revert's own run,
	// which the watcher starts as soon as it sees it, finds the stacks
	// already there and is a no-op.
	var problems []string
	for _, s := range r.stacks {
		res := r.restore(ctx, s)
		r.st.Restored = append(r.st.Restored, res)
		if !res.OK {
			problems = append(problems, fmt.Sprintf("restore %s: %s", s.Name, res.Detail))
		}
	}

	if workflow.GetVersion(ctx, VersionRestoredCommitAttribute, workflow.DefaultVersion, 1) == 1 {
		var restored []string
		for _, res := range r.st.Restored {
			if res.OK {
				restored = append(restored, res.Commit)
			}
		}
		if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeRestoredCommits.ValueSet(restored)); err != nil {
			workflow.GetLogger(ctx).Warn("upsert restored commits", "error", err)
		}
	}

	// The revert commit, pushed whatever the restore's outcome: git must
	// not keep the bad change.
	var rev activities.RevertResult
	err := workflow.ExecuteActivity(withOptions(ctx, revertOptions("Revert "+short)), a.Revert, activities.RevertInput{
		Repo: r.in.Repo, Branch: r.in.Branch, Commit: r.in.Commit, Subject: r.st.Commit.Subject, RunID: r.st.ID,
	}).Get(ctx, &rev)
	switch {
	case err != nil:
		problems = append(problems, "revert commit: "+errorMessage(err))
	case len(rev.Conflicts) > 0:
		problems = append(problems, fmt.Sprintf("the revert of %s conflicts in %s: revert it by hand", short, strings.Join(rev.Conflicts, ", ")))
		r.notify(ctx, notify.Event{Kind: notify.KindRevertConflict, Step: "revert conflicts", Detail: strings.Join(rev.Conflicts, "\n")})
	case rev.Revert != "":
		r.st.RevertCommit = rev.Revert
		if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeRevertCommit.ValueSet(rev.Revert)); err != nil {
			workflow.GetLogger(ctx).Warn("upsert revert commit", "error", err)
		}
		r.notify(ctx, notify.Event{Kind: notify.KindRevert, Step: "revert pushed", Detail: fmt.Sprintf("%s Revert %q", contract.ShortSHA(rev.Revert), r.st.Commit.Subject)})
	}

	// Report.
	var res ChangeResult
	if len(problems) > 0 {
		// What is left to a person belongs in the run's error too.
		r.st.Error = reason + "; rollback incomplete: " + strings.Join(problems, "; ")
		res = r.finish(ctx, contract.StateRollbackFailed, r.st.Error)
	} else {
		res = r.finish(ctx, contract.StateRolledBack, reason+"; rolled back")
	}
	res.RevertCommit, res.Restored = r.st.RevertCommit, r.st.Restored
	return res
}

// restore applies a stack's last good state and verifies it. The stack's
// queue said what that is when it granted the stack; runs on a queue that
// has not seen a success yet fall back to visibility.
func (r *run) restore(ctx workflow.Context, s config.Stack) Restore {
	res := Restore{Stack: s.Name}
	good := r.lastGood[s.Name]
	if good == nil {
		var err error
		switch good, err = lastGoodInVisibility(ctx, s.Name); {
		case err != nil:
			res.Detail = "find the last good commit: " + errorMessage(err)
			return res
		case good == nil:
			res.Detail = "no earlier successful change: nothing to restore to"
			return res
		}
	}
	res.Commit, res.Undone = good.Commit, good.Undone
	short := contract.ShortSHA(good.Commit)
	r.detail(ctx, fmt.Sprintf("Restoring %s to %s…", s.Name, short))
	var applied activities.ApplyResult
	err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Restore %s to %s", s.Name, short), 2*time.Hour, s)),
		a.Apply, activities.StackInput{RunID: r.st.ID, Stack: s, Commit: good.Commit, Undone: good.Undone, Notice: r.notice(ctx)}).Get(ctx, &applied)
	if err != nil {
		res.Detail = fmt.Sprintf("apply %s: %s", short, errorMessage(err))
		return res
	}
	if reason, ok := r.verify(ctx, s, good.Commit, good.Undone); !ok {
		res.Detail = reason
		return res
	}
	res.OK = true
	res.Detail = fmt.Sprintf("restored to %s and verified", short)
	r.notify(ctx, notify.Event{Kind: notify.KindRestored, Step: "restored " + s.Name, Detail: res.Detail})
	return res
}

// lastGoodInVisibility finds a stack's last good state among the finished
// runs, for a stack whose queue has not seen a success; nil when there is
// none.
func lastGoodInVisibility(ctx workflow.Context, stack string) (*contract.Deployed, error) {
	var found activities.LastGoodResult
	err := workflow.ExecuteActivity(withOptions(ctx, gitOptions("Find the last good commit of "+stack)),
		a.LastGood, activities.LastGoodInput{Stack: stack}).Get(ctx, &found)
	if err != nil || !found.Found {
		return nil, err
	}
	return &contract.Deployed{Commit: found.Commit, RunID: found.RunID}, nil
}

// enter moves the run to a state: status, search attribute, UI details.
func (r *run) enter(ctx workflow.Context, state, detail string) {
	r.st.State = state
	r.st.Steps = append(r.st.Steps, Step{State: state, At: workflow.Now(ctx)})
	if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeState.ValueSet(state)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert state", "error", err)
	}
	r.detail(ctx, detail)
}

func (r *run) detail(ctx workflow.Context, detail string) {
	r.st.Detail = detail
	workflow.SetCurrentDetails(ctx, detail)
}

// fail ends the run as failed because an activity gave up.
func (r *run) fail(ctx workflow.Context, what string, err error) ChangeResult {
	r.st.Error = fmt.Sprintf("%s: %s", what, errorMessage(err))
	return r.finish(ctx, contract.StateFailed, r.st.Error)
}

func (r *run) finish(ctx workflow.Context, state, reason string) ChangeResult {
	if state == contract.StateFailed && r.st.Error == "" {
		r.st.Error = reason
	}
	r.enter(ctx, state, reason)
	r.notify(ctx, notify.Event{Kind: notify.KindFinished, Step: state, Detail: reason})
	m := workflow.GetMetricsHandler(ctx)
	m.WithTags(map[string]string{"state": state}).Counter(MetricRunsFinished).Inc(1)
	if state == contract.StateRolledBack || state == contract.StateRollbackFailed {
		m.WithTags(map[string]string{"outcome": state}).Counter(MetricRollbacks).Inc(1)
	}
	return ChangeResult{State: state, Reason: reason}
}

// observe records how long a step took on the run's metrics handler, which
// stays silent while a history is replayed.
func observe(ctx workflow.Context, name string, since time.Time, tags map[string]string) {
	workflow.GetMetricsHandler(ctx).WithTags(tags).Timer(name).Record(workflow.Now(ctx).Sub(since))
}

// notify queues a step message about the run; e says what happened and
// notify adds who, what and where. The outbox delivers it in order and a
// failure is logged, never fatal.
func (r *run) notify(ctx workflow.Context, e notify.Event) {
	r.out.send(ctx, r.about(ctx, e))
}

// about fills in who, what and where of an event about the run.
func (r *run) about(ctx workflow.Context, e notify.Event) notify.Event {
	e.RunID = r.st.ID
	e.Branch = r.in.Branch
	e.Commit = r.st.Commit.SHA
	e.Subject = r.st.Commit.Subject
	e.Author = r.st.Commit.AuthorName
	e.Stacks = r.st.Stacks
	e.State = r.st.State
	if d := r.st.Decision; d != nil && (e.Kind == notify.KindDecision || e.Kind == notify.KindFinished) {
		e.Decision = &notify.Decision{Approve: d.Approve, User: approvedBy(r.st.Approvals, d), Comment: d.Comment, At: d.At, Auto: d.Auto}
	}
	if r.in.UIURL != "" {
		e.URL = fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimSuffix(r.in.UIURL, "/"),
			url.PathEscape(workflow.GetInfo(ctx).Namespace), url.PathEscape(r.st.ID))
	}
	return e
}

// notice is where a stack's step announces the failures it retries: the
// run's message and Slack thread as they stand (StackInput.Notice).
func (r *run) notice(ctx workflow.Context) *notify.Event {
	if r.out.quiet {
		return nil
	}
	e := r.about(ctx, notify.Event{})
	e.Thread = r.out.thread
	return &e
}

// errorMessage extracts what a person should read from an activity error.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		return "timed out (" + timeoutErr.TimeoutType().String() + ")"
	}
	return err.Error()
}

func quote(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("(%q)", s)
}
