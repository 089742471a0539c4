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
	"github.com/changeops/changeops/internal/notify"
)

// a is the nil receiver through which activities are named.
var a *activities.Activities

// ChangeWorkflow is one merged commit's run: inspect, plan, approve, apply,
// verify (DESIGN.md, "The change run").
func ChangeWorkflow(ctx workflow.Context, in ChangeInput) (ChangeResult, error) {
	r := &changeRun{in: in}
	if err := r.setup(ctx); err != nil {
		return ChangeResult{}, err
	}
	res := r.run(ctx)
	r.out.drain(ctx)
	// An update accepted just before the end must get its answer.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return res, err
	}
	return res, nil
}

type changeRun struct {
	out    *outbox
	in     ChangeInput
	st     Status
	stacks []config.Stack
}

func (r *changeRun) setup(ctx workflow.Context) error {
	r.out = newOutbox(ctx)
	r.st.ID = workflow.GetInfo(ctx).WorkflowExecution.ID
	r.st.Branch = r.in.Branch
	r.st.Commit.SHA = r.in.Commit
	if err := workflow.SetQueryHandler(ctx, StatusQuery, func() (Status, error) { return r.st, nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, DecisionUpdate,
		func(ctx workflow.Context, req DecisionRequest) (DecisionResult, error) {
			r.record(ctx, req)
			return DecisionResult{State: r.st.State}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req DecisionRequest) error { return validateDecision(&r.st, req) }},
	); err != nil {
		return err
	}
	// Signals (Slack buttons) get the same rules; a refused one is recorded
	// and ignored, since a signal has no one to answer.
	decisions := workflow.GetSignalChannel(ctx, DecisionSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var req DecisionRequest
			decisions.Receive(ctx, &req)
			if err := validateDecision(&r.st, req); err != nil {
				r.st.Refusals = append(r.st.Refusals, err.Error())
				workflow.GetLogger(ctx).Warn("decision refused", "user", req.User, "reason", err.Error())
				continue
			}
			r.record(ctx, req)
		}
	})
	return nil
}

func (r *changeRun) record(ctx workflow.Context, req DecisionRequest) {
	r.st.Decision = &Decision{Approve: req.Approve, User: req.User, Comment: req.Comment, At: workflow.Now(ctx)}
	if err := workflow.UpsertTypedSearchAttributes(ctx, ChangeApprover.ValueSet(req.User)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert approver", "error", err)
	}
}

func (r *changeRun) run(ctx workflow.Context) ChangeResult {
	short := shortSHA(r.in.Commit)
	r.enter(ctx, StatePlanning, fmt.Sprintf("Inspecting %s…", short))

	// 1. Inspect.
	var insp activities.InspectResult
	err := workflow.ExecuteActivity(withOptions(ctx, gitOptions(fmt.Sprintf("Inspect %s", short))),
		a.Inspect, activities.InspectInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: r.in.Commit}).Get(ctx, &insp)
	if err != nil {
		return r.fail(ctx, "inspect commit "+short, err)
	}
	r.st.Commit = insp.Commit
	r.st.ChangedPaths = insp.ChangedPaths
	r.stacks = insp.Stacks
	for _, s := range insp.Stacks {
		r.st.Stacks = append(r.st.Stacks, s.Name)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		ChangeStacks.ValueSet(r.st.Stacks),
		ChangeAuthor.ValueSet(insp.Commit.AuthorEmail),
	); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
	changed := strings.Join(insp.ChangedPaths, "\n")
	if more := insp.ChangedCount - len(insp.ChangedPaths); more > 0 {
		changed += fmt.Sprintf("\n… and %d more", more)
	}
	r.notify(ctx, "received", changed)
	if len(r.stacks) == 0 {
		return r.finish(ctx, StateNoOp, "the commit touches no configured stack")
	}

	// 2. Queue: the per-stack FIFO queues come with the queue issue; until
	// then a stack is serialised by Pulumi's own stack lock (a concurrent
	// update is retried).

	// 3. Plan.
	for _, s := range r.stacks {
		r.detail(ctx, fmt.Sprintf("Previewing %s at %s…", s.Name, short))
		var plan activities.PlanResult
		err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Preview %s at %s", s.Name, short), 30*time.Minute)),
			a.Preview, activities.StackInput{RunID: r.st.ID, Stack: s, Commit: r.in.Commit}).Get(ctx, &plan)
		if err != nil {
			return r.fail(ctx, "plan "+s.Name, err)
		}
		r.st.Plans = append(r.st.Plans, plan)
	}
	r.notify(ctx, "plan ready", planSummary(r.st.Plans))

	// 4. Approve.
	if res, ok := r.approve(ctx); !ok {
		return res
	}

	// 5. Apply.
	r.enter(ctx, StateApplying, fmt.Sprintf("Applying %s…", strings.Join(r.st.Stacks, ", ")))
	r.notify(ctx, "applying", "")
	for _, s := range r.stacks {
		r.detail(ctx, fmt.Sprintf("Applying %s at %s…", s.Name, short))
		var res activities.ApplyResult
		err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Apply %s at %s", s.Name, short), 2*time.Hour)),
			a.Apply, activities.StackInput{RunID: r.st.ID, Stack: s, Commit: r.in.Commit}).Get(ctx, &res)
		if err != nil {
			r.st.Error = fmt.Sprintf("apply %s: %s", s.Name, errorMessage(err))
			return r.changeFailed(ctx, r.st.Error)
		}
		r.st.Applies = append(r.st.Applies, res)
	}
	r.notify(ctx, "applied", applySummary(r.st.Applies))

	// 6. Verify.
	r.enter(ctx, StateVerifying, fmt.Sprintf("Verifying %s…", strings.Join(r.st.Stacks, ", ")))
	for _, s := range r.stacks {
		if reason, ok := r.verify(ctx, s); !ok {
			return r.changeFailed(ctx, reason)
		}
	}

	// 7. Succeed.
	return r.finish(ctx, StateSucceeded, "applied and verified")
}

// approve waits for a decision when policy asks for one. ok is false when
// the run ends here (rejected, expired, or no one may approve).
func (r *changeRun) approve(ctx workflow.Context) (ChangeResult, bool) {
	r.st.Approval = approvalFor(r.stacks, r.st.Plans)
	ap := &r.st.Approval
	if !ap.Required {
		r.st.Decision = &Decision{Approve: true, User: "policy", Auto: true, At: workflow.Now(ctx)}
		r.notify(ctx, "approved by policy", "")
		return ChangeResult{}, true
	}
	if len(ap.Approvers) == 0 {
		return r.finish(ctx, StateFailed, fmt.Sprintf(
			"no approver is allowed on all of %s: give these stacks a common approver in the config", strings.Join(ap.Stacks, ", "))), false
	}
	ap.Deadline = workflow.Now(ctx).Add(ap.Timeout)
	r.enter(ctx, StateAwaitingApproval, fmt.Sprintf("Waiting for %s until %s", strings.Join(ap.Approvers, " or "), ap.Deadline.Format(time.RFC3339)))
	r.notify(ctx, "awaiting approval", fmt.Sprintf("approvers: %s; expires %s", strings.Join(ap.Approvers, ", "), ap.Deadline.Format(time.RFC3339)))
	decided, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      ap.Timeout,
		TimerOptions: workflow.TimerOptions{Summary: "approval timeout"},
	}, func() bool { return r.st.Decision != nil })
	if err != nil {
		return r.finish(ctx, StateFailed, "waiting for approval: "+err.Error()), false
	}
	if !decided {
		return r.finish(ctx, StateExpired, fmt.Sprintf("no decision within %s", ap.Timeout)), false
	}
	d := r.st.Decision
	if !d.Approve {
		return r.finish(ctx, StateRejected, fmt.Sprintf("rejected by %s %s", d.User, quote(d.Comment))), false
	}
	r.notify(ctx, "approved by "+d.User, d.Comment)
	return ChangeResult{}, true
}

// verify runs a stack's checks until a round passes or verify_timeout is
// spent, waiting between rounds on durable timers.
func (r *changeRun) verify(ctx workflow.Context, s config.Stack) (string, bool) {
	if len(s.Verify) == 0 {
		return "", true
	}
	short := shortSHA(r.in.Commit)
	deadline := workflow.Now(ctx).Add(s.VerifyTimeout.D())
	interval := min(max(s.VerifyTimeout.D()/10, time.Second), 30*time.Second)
	idx := len(r.st.Verifications)
	r.st.Verifications = append(r.st.Verifications, activities.VerifyResult{Stack: s.Name})
	for round := 1; ; round++ {
		r.detail(ctx, fmt.Sprintf("Verifying %s at %s (round %d)…", s.Name, short, round))
		var res activities.VerifyResult
		err := workflow.ExecuteActivity(withOptions(ctx, verifyOptions(fmt.Sprintf("Verify %s at %s", s.Name, short))),
			a.Verify, activities.VerifyInput{RunID: r.st.ID, Stack: s, Commit: r.in.Commit}).Get(ctx, &res)
		if err != nil {
			return fmt.Sprintf("verify %s: %s", s.Name, errorMessage(err)), false
		}
		r.st.Verifications[idx] = res
		if res.Passed {
			r.notify(ctx, "verified "+s.Name, checkSummary(res))
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
// failed (apply or verification). This is the rollback seam: the revert
// commit and the restore of the last good state (DESIGN.md step 8) go here.
// Until they exist the run ends failed with the reason.
func (r *changeRun) changeFailed(ctx workflow.Context, reason string) ChangeResult {
	return r.finish(ctx, StateFailed, reason)
}

// enter moves the run to a state: status, search attribute, UI details.
func (r *changeRun) enter(ctx workflow.Context, state, detail string) {
	r.st.State = state
	r.st.Steps = append(r.st.Steps, Step{State: state, At: workflow.Now(ctx)})
	if err := workflow.UpsertTypedSearchAttributes(ctx, ChangeState.ValueSet(state)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert state", "error", err)
	}
	r.detail(ctx, detail)
}

func (r *changeRun) detail(ctx workflow.Context, detail string) {
	r.st.Detail = detail
	workflow.SetCurrentDetails(ctx, detail)
}

// fail ends the run as failed because an activity gave up.
func (r *changeRun) fail(ctx workflow.Context, what string, err error) ChangeResult {
	r.st.Error = fmt.Sprintf("%s: %s", what, errorMessage(err))
	return r.finish(ctx, StateFailed, r.st.Error)
}

func (r *changeRun) finish(ctx workflow.Context, state, reason string) ChangeResult {
	if state == StateFailed && r.st.Error == "" {
		r.st.Error = reason
	}
	r.enter(ctx, state, reason)
	r.notify(ctx, state, reason)
	return ChangeResult{State: state, Reason: reason}
}

// notify queues a step message; the outbox delivers it in order and a
// failure is logged, never fatal.
func (r *changeRun) notify(ctx workflow.Context, step, detail string) {
	e := notify.Event{
		RunID:   r.st.ID,
		Branch:  r.in.Branch,
		Commit:  r.st.Commit.SHA,
		Subject: r.st.Commit.Subject,
		Author:  r.st.Commit.AuthorName,
		Stacks:  r.st.Stacks,
		State:   r.st.State,
		Step:    step,
		Detail:  detail,
	}
	if r.in.UIURL != "" {
		e.URL = fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimSuffix(r.in.UIURL, "/"),
			url.PathEscape(workflow.GetInfo(ctx).Namespace), url.PathEscape(r.st.ID))
	}
	r.out.send(ctx, e)
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
