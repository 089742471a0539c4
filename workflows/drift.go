package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// Drift checks one stack for drift: the live resources compared
// with the stack's last good state in git (its effective tree), inside the
// stack's queue so that it never races a change. A stack that matches git
// ends drift-none without a word; drift is reported with what differs and
// then, by the stack's drift policy, left (notify), put to the approvers
// (approve: Re-apply git or Accept) or re-applied at once (heal). A
// re-apply is the change run's apply and verification of the last good
// state, with a refresh so that up sees what changed.
//
// A drift run is a run (change.go) on another path: the same
// status query, decisions, notifications and queue handling, so the CLI,
// the Slack app and the audit read it as they read a change.
func (w Workflows) Drift(ctx workflow.Context, in DriftInput) (ChangeResult, error) {
	r := &run{in: ChangeInput{UIURL: in.UIURL}, gate: w.Gate}
	if err := r.setup(ctx); err != nil {
		return ChangeResult{}, err
	}
	r.st.Kind = contract.KindDrift
	res := r.drift(ctx, in)
	r.releaseQueues(ctx, res)
	r.out.drain(ctx)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return res, err
	}
	return res, nil
}

func (r *run) drift(ctx workflow.Context, in DriftInput) ChangeResult {
	r.st.Stacks = []string{in.Stack}
	r.st.Commit.Subject = "Drift check of stack " + in.Stack
	if in.By != "" {
		r.st.Commit.Subject += " (asked by " + in.By + ")"
	}
	r.enter(ctx, contract.StateDriftChecking, fmt.Sprintf("Checking %s for drift…", in.Stack))
	var s config.Stack
	err := workflow.ExecuteActivity(withOptions(ctx, gitOptions("Configuration of stack "+in.Stack)),
		a.StackConfig, in.Stack).Get(ctx, &s)
	if err != nil {
		return r.fail(ctx, "read the configuration of stack "+in.Stack, err)
	}
	r.stacks = []config.Stack{s}
	if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeStacks.ValueSet(r.st.Stacks)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
	policy := s.Drift
	if in.Policy != "" {
		policy = in.Policy
	}
	// Whoever can start a workflow can ask for --heal, and a heal applies
	// without a person: so --heal heals at once only where the stack's own
	// policy does, and elsewhere asks the stack's approvers (or only
	// reports, when it has none).
	healAsks := false
	if in.Policy == config.DriftHeal && s.Drift != config.DriftHeal &&
		workflow.GetVersion(ctx, VersionHealOverrideAsks, workflow.DefaultVersion, 1) == 1 {
		healAsks, policy = true, config.DriftApprove
		if len(s.Approvers) == 0 {
			policy = config.DriftNotify
		}
	}

	// 1. Wait for the stack, and learn its last good state.
	good, res, ok := r.holdStack(ctx, s)
	if !ok {
		return res
	}
	if good == nil {
		r.out.quiet = true // nothing to tell: there is no deployment to drift from
		return r.finish(ctx, contract.StateNoOp, fmt.Sprintf("stack %s has no successful change yet: there is no git state to compare with", s.Name))
	}
	r.st.Commit.SHA, r.st.Undone = good.Commit, good.Undone
	short := contract.ShortSHA(good.Commit)

	// 2. Check: refresh and preview at the last good state.
	r.enter(ctx, contract.StateDriftChecking, fmt.Sprintf("Checking %s against %s…", s.Name, short))
	var found activities.DriftResult
	err = workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Drift check of %s at %s", s.Name, short), 30*time.Minute, s)),
		a.DriftCheck, activities.StackInput{RunID: r.st.ID, Stack: s, Commit: good.Commit, Undone: good.Undone, Refresh: true, Notice: r.notice(ctx)}).Get(ctx, &found)
	if err != nil {
		return r.fail(ctx, "drift check of "+s.Name, err)
	}
	r.st.Drift = &found
	r.st.Plans = []activities.PlanResult{found.Plan}
	result := "none"
	if found.Drifted() {
		result = "found"
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"stack": s.Name, "result": result}).Counter(MetricDriftChecks).Inc(1)
	if !found.Drifted() {
		r.out.quiet = true // recorded in the run and the metric; no message
		return r.finish(ctx, contract.StateDriftNone, fmt.Sprintf("%s matches %s", s.Name, short))
	}

	// 3. Drift. The stack goes back to the queue while people look.
	r.releaseHeld(ctx)
	r.notify(ctx, notify.Event{
		Kind: notify.KindDrift, Step: "drift found",
		Detail: driftSummary(s.Name, good.Commit, found),
		Plans:  notePlans(r.st.Plans),
	})
	// Re-applying git is a plan like any other: a policy may deny it.
	if reason := policyDenied(r.st.Plans); reason != "" && policy != config.DriftNotify {
		return r.finish(ctx, contract.StatePolicyDenied, reason)
	}
	switch policy {
	case config.DriftHeal:
		r.st.Decision = &Decision{Approve: true, User: "policy", Auto: true, At: workflow.Now(ctx)}
		return r.heal(ctx, s, good, "")
	case config.DriftApprove:
		if healAsks {
			r.detail(ctx, fmt.Sprintf("--heal asks the approvers: stack %s's drift policy is %s, not heal", s.Name, s.Drift))
		}
		return r.askDrift(ctx, s, good, found)
	}
	return r.finish(ctx, contract.StateDriftFound, fmt.Sprintf(
		"%s differs from %s (%s); policy notify: nothing was changed. To restore git, run changeops drift %s --heal",
		s.Name, short, driftCounts(found.Plan), s.Name))
}

// askDrift puts the drift to the stack's approvers: Re-apply git heals,
// Accept leaves the stack as it is until the next check.
func (r *run) askDrift(ctx workflow.Context, s config.Stack, good *contract.Deployed, found activities.DriftResult) ChangeResult {
	approvers := slices.Clone(s.Approvers)
	slices.Sort(approvers)
	r.st.Approval = Approval{Required: true, Stacks: []string{s.Name}, Approvers: approvers, Timeout: s.ApprovalTimeout.D()}
	decided, err := r.ask(ctx, notify.Ask{
		Question:     fmt.Sprintf("Stack %s differs from git (%s). Re-apply %s, or accept the difference until the next check?", s.Name, driftCounts(found.Plan), contract.ShortSHA(good.Commit)),
		ApproveLabel: "Re-apply git",
		RejectLabel:  "Accept",
	})
	if err != nil {
		return r.finish(ctx, contract.StateFailed, "waiting for a decision: "+err.Error())
	}
	if !decided {
		return r.finish(ctx, contract.StateDriftFound, fmt.Sprintf("no decision within %s: %s stays as it is, and the next check asks again", s.ApprovalTimeout.D(), s.Name))
	}
	d := r.st.Decision
	if !d.Approve {
		return r.finish(ctx, contract.StateDriftAccepted, fmt.Sprintf("accepted by %s %s: %s stays as it is until the next check", d.User, quote(d.Comment), s.Name))
	}
	r.notify(ctx, notify.Event{Kind: notify.KindDecision, Step: "re-apply approved by " + d.User, Detail: d.Comment})
	return r.heal(ctx, s, good, found.Plan.Steps)
}

// heal re-applies the stack's last good state over the drift and verifies
// it. With approved set (a person approved a plan), the stack must still
// be at the commit that was checked and up must take the approved steps;
// otherwise nothing is applied and the run says why.
func (r *run) heal(ctx workflow.Context, s config.Stack, checked *contract.Deployed, approved string) ChangeResult {
	good, res, ok := r.holdStack(ctx, s)
	if !ok {
		return res
	}
	if good == nil || good.Commit != checked.Commit || !slices.Equal(good.Undone, checked.Undone) {
		return r.finish(ctx, contract.StateDriftFound, fmt.Sprintf(
			"a change deployed %s while the drift waited, so the check no longer holds: nothing was re-applied; run changeops drift %s to check again",
			s.Name, s.Name))
	}
	// A heal applies only inside the stack's change window (window.go).
	if res, ok := r.awaitWindow(ctx); !ok {
		return res
	}
	short := contract.ShortSHA(good.Commit)
	r.enter(ctx, contract.StateApplying, fmt.Sprintf("Re-applying %s to %s…", short, s.Name))
	r.notify(ctx, notify.Event{Kind: notify.KindApplying, Step: "re-applying " + short})
	var out activities.ApplyResult
	started := workflow.Now(ctx)
	err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Re-apply %s to %s", short, s.Name), 2*time.Hour, s)),
		a.Apply, activities.StackInput{RunID: r.st.ID, Stack: s, Commit: good.Commit, Undone: good.Undone, Refresh: true, Approved: approved, Notice: r.notice(ctx)}).Get(ctx, &out)
	observe(ctx, MetricApplyDuration, started, map[string]string{"stack": s.Name})
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == activities.ErrPlanChanged {
		return r.finish(ctx, contract.StateDriftFound, fmt.Sprintf(
			"%s drifted further after the decision (%s): nothing was re-applied; run changeops drift %s to check again", s.Name, appErr.Message(), s.Name))
	}
	if err != nil {
		r.st.Error = fmt.Sprintf("re-apply %s to %s: %s", short, s.Name, errorMessage(err))
		return r.finish(ctx, contract.StateFailed, r.st.Error)
	}
	r.st.Applies = append(r.st.Applies, out)
	r.notify(ctx, notify.Event{Kind: notify.KindApplied, Step: "re-applied", Detail: applySummary(r.st.Applies)})
	r.enter(ctx, contract.StateVerifying, fmt.Sprintf("Verifying %s…", s.Name))
	if reason, ok := r.verify(ctx, s, good.Commit, good.Undone); !ok {
		return r.finish(ctx, contract.StateFailed, reason+fmt.Sprintf("; %s holds git's last good state %s again, which does not verify: look at it by hand", s.Name, short))
	}
	return r.finish(ctx, contract.StateDriftHealed, fmt.Sprintf("re-applied %s to %s and verified", short, s.Name))
}

// holdStack enters the stack's queue and waits for it. good is the stack's
// last good state (from the queue, or from visibility on a queue that has
// not seen a success); nil when there is none. ok is false when the run
// ends here.
func (r *run) holdStack(ctx workflow.Context, s config.Stack) (good *contract.Deployed, res ChangeResult, ok bool) {
	r.queued = true
	r.enter(ctx, contract.StateQueued, "Waiting for "+s.Name)
	req := contract.EnqueueRequest{Entries: []contract.QueueRequest{{Stack: s.Name, RunID: r.st.ID}}}
	if err := workflow.ExecuteActivity(withOptions(ctx, gitOptions("Enter the queue of "+s.Name)), a.Enqueue, req).Get(ctx, nil); err != nil {
		return nil, r.fail(ctx, "enter the queue of "+s.Name, err), false
	}
	grants := workflow.GetSignalChannel(ctx, contract.GrantSignal)
	for {
		var g contract.Grant
		if !grants.Receive(ctx, &g) {
			return nil, r.finish(ctx, contract.StateFailed, "cancelled while queued"), false
		}
		if g.Stack != s.Name {
			r.releaseQueue(ctx, g.Stack, nil) // not asked for: give it back
			continue
		}
		good = g.LastGood
		break
	}
	r.st.Held = []string{s.Name}
	if good != nil {
		return good, ChangeResult{}, true
	}
	good, err := lastGoodInVisibility(ctx, s.Name)
	if err != nil {
		return nil, r.fail(ctx, "find the last good commit of "+s.Name, err), false
	}
	return good, ChangeResult{}, true
}

// releaseHeld gives the stack back before a long wait.
func (r *run) releaseHeld(ctx workflow.Context) {
	for _, name := range r.st.Held {
		r.releaseQueue(ctx, name, nil)
	}
	r.st.Held, r.queued = nil, false
}

func driftCounts(p activities.PlanResult) string {
	var parts []string
	for _, c := range []struct {
		n    int
		verb string
	}{{p.Create, "to create"}, {p.Update, "to update"}, {p.Replace, "to replace"}, {p.Delete, "to delete"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.verb))
		}
	}
	return strings.Join(parts, ", ")
}

// driftSummary names what differs: each resource, the step that would put
// it back, and the properties Pulumi reports as changed.
func driftSummary(stack, commit string, d activities.DriftResult) string {
	lines := []string{fmt.Sprintf("%s differs from %s: re-applying git would take %s", stack, contract.ShortSHA(commit), driftCounts(d.Plan))}
	for _, res := range d.Resources {
		line := fmt.Sprintf("%s %s", res.Op, res.URN)
		if len(res.Properties) > 0 {
			line += " (" + strings.Join(res.Properties, ", ") + ")"
		}
		lines = append(lines, line)
	}
	if n := d.Plan.Changes() - len(d.Resources); n > 0 && len(d.Resources) == activities.MaxDrifted {
		lines = append(lines, fmt.Sprintf("… and %d more", n))
	}
	return strings.Join(lines, "\n")
}
