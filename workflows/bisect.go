package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// bisect finds the commit that broke a batch (docs/batching.md#bisection)
// once the stack is restored: the batch's commits are the leader's then
// its members', oldest first; the newest one's tree failed. It deploys
// the tree of the middle of the range not yet judged, keeps the half that
// holds the failure, and so finds the first bad commit in ⌈log2 n⌉ ups.
// That commit is reverted alone, and the commits after it deploy together
// without it in one more up. Each member hears its own outcome; the
// leader's is returned. A batch with more than one bad commit finds the
// first: the runs after it that fail again are left queued, each to
// deploy on its own run.
func (r *run) bisect(ctx workflow.Context, reason string) ChangeResult {
	b := r.batch
	b.bisected = true
	// The leader's status says at once that the batch is bisected: a
	// member not yet told must not be confirmed by the leader's ending
	// (CheckBatched), whatever stops the bisection.
	r.st.Batch.Bisected = true
	all := append([]contract.QueueEntry{{RunID: r.st.ID, Commit: r.in.Commit}}, b.members...)
	// all[lo] is the newest commit whose tree passed (-1: the last good
	// state), all[hi] the oldest known to fail.
	lo, hi := -1, len(all)-1
	var loUndone []string
	stackBad := false // the last tree applied failed
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		r.detail(ctx, fmt.Sprintf("Bisecting the batch: trying %s (%d of %d)…", contract.ShortSHA(all[mid].Commit), mid+1, len(all)))
		t := r.tryTree(ctx, all[mid].Commit, r.bisectWindow(stackBad))
		switch t.outcome {
		case treePassed:
			lo, loUndone, stackBad = mid, t.undone, false
		case treeFailed:
			hi, reason, stackBad = mid, t.why, true
		default:
			return r.bisectStopped(ctx, all, lo, loUndone, stackBad || t.began, reason, t)
		}
	}
	bad := all[hi]
	r.notify(ctx, notify.Event{Step: "bisected", Detail: fmt.Sprintf("%s broke the batch: %s", contract.ShortSHA(bad.Commit), reason)})
	r.tellGood(ctx, all, lo, loUndone)

	// Revert the bad commit alone, then deploy the rest without it.
	revert, problem := r.revertOf(ctx, bad.Commit)
	rest := all[hi+1:]
	if len(rest) > 0 && problem == "" {
		head := rest[len(rest)-1].Commit
		r.detail(ctx, fmt.Sprintf("Deploying the rest of the batch at %s without %s…", contract.ShortSHA(head), contract.ShortSHA(bad.Commit)))
		t := r.tryTree(ctx, head, r.bisectWindow(stackBad))
		stackBad = t.outcome != treePassed && (stackBad || t.outcome == treeFailed || t.began)
		if t.outcome == runEnded {
			ctx, _ = workflow.NewDisconnectedContext(ctx) // what was found is still reported
		}
		switch {
		case t.outcome == treePassed:
			b.good = &contract.Deployed{Commit: head, Undone: t.undone, RunID: r.st.ID}
			for _, m := range rest {
				r.tell(ctx, m, contract.StateSucceeded, "", "")
			}
		case t.outcome == treeFailed:
			r.notify(ctx, notify.Event{Step: "batch failed again", Detail: fmt.Sprintf("the rest without %s failed too (%s): each deploys on its own run",
				contract.ShortSHA(bad.Commit), t.why)})
		default:
			r.notify(ctx, notify.Event{Step: "rest not deployed", Detail: fmt.Sprintf("the rest without %s was not deployed, not blamed on any commit (%s): each deploys on its own run",
				contract.ShortSHA(bad.Commit), t.why)})
		}
	}
	if stackBad {
		r.restoreGood(ctx)
	}

	state, failure := contract.StateRolledBack, reason
	if problem != "" {
		state, failure = contract.StateRollbackFailed, reason+"; rollback incomplete: "+problem
	}
	if bad.RunID != r.st.ID {
		r.tell(ctx, bad, state, failure, revert)
		return r.finish(ctx, contract.StateSucceeded, fmt.Sprintf("deployed in batch: bisection found %s broke it and reverted it; this change is deployed",
			contract.ShortSHA(bad.Commit)))
	}
	r.st.Error, r.st.RevertCommit = failure, revert
	res := r.finish(ctx, state, fmt.Sprintf("its batch failed and bisection found this commit: %s", failure))
	res.RevertCommit, res.Restored = r.st.RevertCommit, r.st.Restored
	return res
}

// tellGood tells the members of the good prefix, all[1..lo], that they
// are deployed (all[0] is the leader itself), and keeps the prefix as the
// stack's good state.
func (r *run) tellGood(ctx workflow.Context, all []contract.QueueEntry, lo int, loUndone []string) {
	for i := 1; i <= lo; i++ {
		r.tell(ctx, all[i], contract.StateSucceeded, "", "")
	}
	if lo >= 0 {
		r.batch.good = &contract.Deployed{Commit: all[lo].Commit, Undone: loUndone, RunID: r.st.ID}
	}
}

// bisectStopped ends a bisection that cannot go on: an up failed for a
// reason that is not the tree's (an engine or infrastructure failure:
// blaming a commit for it could revert a good change), or the wait for
// the stack's window ended the run. The good prefix found so far is
// deployed; the stack is put back to it (or to the last good state) when
// the last up left it unknown or failing; every commit not yet judged
// stays queued to deploy on its own run, where a failure is its own.
func (r *run) bisectStopped(ctx workflow.Context, all []contract.QueueEntry, lo int, loUndone []string, restore bool, reason string, t tried) ChangeResult {
	r.tellGood(ctx, all, lo, loUndone)
	if restore {
		rctx, _ := workflow.NewDisconnectedContext(ctx) // a run cancelled in its window wait still restores
		r.restoreGood(rctx)
	}
	var left []string
	for _, m := range all[lo+1:] {
		if m.RunID != r.st.ID {
			left = append(left, contract.ShortSHA(m.Commit))
		}
	}
	queued := "no member is left"
	if len(left) > 0 {
		queued = strings.Join(left, ", ") + " stay queued and each deploys on its own run"
	}
	r.notify(ctx, notify.Event{Step: "bisection stopped", Detail: fmt.Sprintf("%s; not blamed on any commit: %s", t.why, queued)})
	if t.outcome == runEnded {
		return t.ended
	}
	if lo >= 0 {
		return r.finish(ctx, contract.StateSucceeded, fmt.Sprintf(
			"deployed in batch: its batch failed (%s) and bisection deployed and verified this change, then stopped: %s; %s", reason, t.why, queued))
	}
	return r.finish(ctx, contract.StateFailed, fmt.Sprintf(
		"its batch failed (%s), and bisection stopped before judging this change: %s; the stack is restored, nothing is reverted, and %s", reason, t.why, queued))
}

// trial is how one bisection up went.
type trial int

const (
	treePassed   trial = iota // applied and verified
	treeFailed                // the tree's fault: its program, its checks, a reverted base
	engineFailed              // not the tree's fault: bisection stops
	runEnded                  // the wait for the window ended the run
)

type tried struct {
	outcome trial
	undone  []string // the tree's undone changes, when it passed
	why     string
	// began: a failed up may have changed resources.
	began bool
	// ended is the run's result when the window wait ended it.
	ended ChangeResult
}

// tryTree applies the effective tree of a commit of the batch to its one
// stack and verifies it. Since batch-approvals a bisection up waits for
// the stack's window like any up (wait; nil for a restore, which does
// not), and a failure that is not the tree's fault is told apart
// (engineFailed); before, every failure counted against the tree.
func (r *run) tryTree(ctx workflow.Context, commit string, wait func(workflow.Context) (ChangeResult, bool)) tried {
	short := contract.ShortSHA(commit)
	notTheTree := func(why string, began bool) tried {
		if !r.batch.asks {
			return tried{outcome: treeFailed, why: why}
		}
		return tried{outcome: engineFailed, why: why, began: began}
	}
	var eff activities.EffectiveResult
	err := workflow.ExecuteActivity(withOptions(ctx, effectiveOptions("Effective tree of "+short)), a.Effective,
		activities.EffectiveInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: commit}).Get(ctx, &eff)
	switch {
	case err != nil:
		return notTheTree("effective tree of "+short+": "+errorMessage(err), false)
	case eff.DependsOn != "":
		return tried{outcome: treeFailed, why: fmt.Sprintf("%s builds on %s, which was reverted", short, contract.ShortSHA(eff.DependsOn))}
	}
	s := r.stacks[0]
	in := activities.StackInput{RunID: r.st.ID, Stack: s, Commit: commit, Undone: eff.Undone, Notice: r.notice(ctx)}
	if r.batch.asks && wait != nil {
		// A trial tree is a plan nobody was shown: it is planned and
		// judged like a run's, and deployed only when its plan needs no
		// decision (policy's and the stack's approval) and no policy
		// denies it; then the apply holds it to that plan. Otherwise
		// bisection stops and the runs not yet judged deploy one by one,
		// each asking for its own approval. A restore (wait nil) applies
		// a state that was deployed before, as a rollback does.
		var plan activities.PlanResult
		err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Preview %s at %s (bisecting)", s.Name, short), 30*time.Minute, s)),
			a.Preview, in).Get(ctx, &plan)
		if err != nil {
			why := fmt.Sprintf("plan %s at %s: %s", s.Name, short, errorMessage(err))
			if treesFault(err) {
				return tried{outcome: treeFailed, why: why}
			}
			return notTheTree(why, false)
		}
		plans := []activities.PlanResult{plan}
		if reason := policyDenied(plans); reason != "" {
			return notTheTree(fmt.Sprintf("a policy denies the tree of %s (%s), which bisection would deploy", short, reason), false)
		}
		ap := approvalFor(r.stacks, plans)
		withPolicy(&ap, r.stacks, plans)
		if ap.Required {
			return notTheTree(fmt.Sprintf("the tree of %s needs a decision (%s), which nobody gave for it: bisection deploys no tree unapproved",
				short, planSummary(plans)), false)
		}
		if s.Approval != config.ApprovalAuto {
			in.Approved = plan.Steps
		}
		if res, ok := wait(ctx); !ok {
			return tried{outcome: runEnded, why: "the wait for the change window ended the run: " + res.Reason, ended: res}
		}
	}
	var out activities.ApplyResult
	err = workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Apply %s at %s (bisecting)", s.Name, short), 2*time.Hour, s)),
		a.Apply, in).Get(ctx, &out)
	if err != nil {
		why := fmt.Sprintf("apply %s at %s: %s", s.Name, short, errorMessage(err))
		if treesFault(err) {
			return tried{outcome: treeFailed, why: why}
		}
		return notTheTree(why, updateBegan(err))
	}
	n := len(r.st.Verifications)
	if why, ok := r.verify(ctx, s, commit, eff.Undone); !ok {
		// A verification that never ran a check (its activity failed)
		// says nothing of the tree.
		if len(r.st.Verifications) > n && len(r.st.Verifications[n].Results) == 0 {
			return notTheTree(why, true)
		}
		return tried{outcome: treeFailed, why: why}
	}
	return tried{outcome: treePassed, undone: eff.Undone}
}

// treesFault says whether a failed up is the tree's fault: the engine
// found its program or inputs wrong (activities.ErrPulumiProgram). Any
// other failure (a transient error that outlasted its retries, a lock, a
// backend or the CLI, a timeout) is the engine's or the
// infrastructure's: bisection must not blame a commit for it.
func treesFault(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == activities.ErrPulumiProgram
}

// bisectWindow holds a bisection up until the stack's window allows it,
// like any up (window.go); ok is false when the wait ended the run. A
// stack holding a failing tree is first put back to its good state when
// the window is shut: a restore does not wait, and the stack must not
// stay broken through a freeze.
func (r *run) bisectWindow(stackBad bool) func(workflow.Context) (ChangeResult, bool) {
	return func(ctx workflow.Context) (ChangeResult, bool) { return r.awaitBisectWindow(ctx, stackBad) }
}

func (r *run) awaitBisectWindow(ctx workflow.Context, stackBad bool) (ChangeResult, bool) {
	if stackBad {
		var res activities.WindowResult
		err := workflow.ExecuteActivity(withOptions(ctx, windowOptions("Check the change window of "+strings.Join(r.st.Stacks, ", "))), a.Window,
			activities.WindowInput{RunID: r.st.ID, Stacks: r.st.Stacks}).Get(ctx, &res)
		if err == nil && !res.Allowed && (r.st.Window == nil || !r.st.Window.Overridden) {
			r.restoreGood(ctx)
		}
	}
	res, ok := r.awaitWindow(ctx)
	if ok && r.st.State != contract.StateRollingBack {
		r.enter(ctx, contract.StateRollingBack, "Bisecting the batch…")
	}
	return res, ok
}

// revertOf pushes the revert of a batch's bad commit; problem says what is
// left to a person.
func (r *run) revertOf(ctx workflow.Context, commit string) (revert, problem string) {
	short := contract.ShortSHA(commit)
	subject := r.st.Commit.Subject
	if commit != r.in.Commit {
		var insp activities.InspectResult
		err := workflow.ExecuteActivity(withOptions(ctx, gitOptions("Inspect "+short)), a.Inspect,
			activities.InspectInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: commit}).Get(ctx, &insp)
		if err != nil {
			return "", "read " + short + " for its revert: " + errorMessage(err)
		}
		subject = insp.Commit.Subject
	}
	var rev activities.RevertResult
	err := workflow.ExecuteActivity(withOptions(ctx, revertOptions("Revert "+short)), a.Revert, activities.RevertInput{
		Repo: r.in.Repo, Branch: r.in.Branch, Commit: commit, Subject: subject, RunID: r.st.ID,
	}).Get(ctx, &rev)
	switch {
	case err != nil:
		return "", "revert commit: " + errorMessage(err)
	case len(rev.Conflicts) > 0:
		return "", fmt.Sprintf("the revert of %s conflicts in %s: revert it by hand", short, strings.Join(rev.Conflicts, ", "))
	}
	if rev.Revert != "" {
		r.notify(ctx, notify.Event{Kind: notify.KindRevert, Step: "revert pushed", Detail: fmt.Sprintf("%s Revert %q", contract.ShortSHA(rev.Revert), subject)})
	}
	return rev.Revert, ""
}

// restoreGood puts the stack back to the batch's good prefix, or to the
// last good state from before the batch.
func (r *run) restoreGood(ctx workflow.Context) {
	if g := r.batch.good; g != nil {
		if t := r.tryTree(ctx, g.Commit, nil); t.outcome != treePassed {
			workflow.GetLogger(ctx).Warn("restore the batch's good prefix", "commit", g.Commit, "reason", t.why)
		}
		return
	}
	for _, s := range r.stacks {
		r.st.Restored = append(r.st.Restored, r.restore(ctx, s))
	}
}

// tell signals a member its outcome; the members told leave the queue
// with the leader's release.
func (r *run) tell(ctx workflow.Context, m contract.QueueEntry, state, failure, revert string) {
	// The leader's status is the record the member checks the signal by.
	r.st.Batch.Bisected = true
	r.st.Batch.Outcomes = append(r.st.Batch.Outcomes, contract.BatchOutcome{Commit: m.Commit, State: state, Failure: failure, Revert: revert})
	b := *r.st.Batch
	b.State, b.Failure, b.Revert, b.Bisected, b.Outcomes = state, failure, revert, true, nil
	if err := workflow.SignalExternalWorkflow(ctx, m.RunID, "", contract.BatchedSignal, b).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("tell a batch member", "run", m.RunID, "error", err)
	}
	r.batch.told = append(r.batch.told, m.RunID)
}
