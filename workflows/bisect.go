package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
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
	all := append([]contract.QueueEntry{{RunID: r.st.ID, Commit: r.in.Commit}}, b.members...)
	// all[lo] is the newest commit whose tree passed (-1: the last good
	// state), all[hi] the oldest known to fail.
	lo, hi := -1, len(all)-1
	var loUndone []string
	stackBad := false // the last tree applied failed
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		r.detail(ctx, fmt.Sprintf("Bisecting the batch: trying %s (%d of %d)…", contract.ShortSHA(all[mid].Commit), mid+1, len(all)))
		undone, why, ok := r.tryTree(ctx, all[mid].Commit)
		if ok {
			lo, loUndone, stackBad = mid, undone, false
		} else {
			hi, reason, stackBad = mid, why, true
		}
	}
	bad := all[hi]
	r.notify(ctx, notify.Event{Step: "bisected", Detail: fmt.Sprintf("%s broke the batch: %s", contract.ShortSHA(bad.Commit), reason)})

	// The good prefix: its members are deployed; the stack's good state.
	for i := 1; i <= lo; i++ { // all[0] is the leader itself
		r.tell(ctx, all[i], contract.StateSucceeded, "", "")
	}
	if lo >= 0 {
		b.good = &contract.Deployed{Commit: all[lo].Commit, Undone: loUndone, RunID: r.st.ID}
	}

	// Revert the bad commit alone, then deploy the rest without it.
	revert, problem := r.revertOf(ctx, bad.Commit)
	rest := all[hi+1:]
	if len(rest) > 0 && problem == "" {
		head := rest[len(rest)-1].Commit
		r.detail(ctx, fmt.Sprintf("Deploying the rest of the batch at %s without %s…", contract.ShortSHA(head), contract.ShortSHA(bad.Commit)))
		undone, why, ok := r.tryTree(ctx, head)
		stackBad = !ok
		if ok {
			b.good = &contract.Deployed{Commit: head, Undone: undone, RunID: r.st.ID}
			for _, m := range rest {
				r.tell(ctx, m, contract.StateSucceeded, "", "")
			}
		} else {
			r.notify(ctx, notify.Event{Step: "batch failed again", Detail: fmt.Sprintf("the rest without %s failed too (%s): each deploys on its own run",
				contract.ShortSHA(bad.Commit), why)})
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

// tryTree applies the effective tree of a commit of the batch to its one
// stack and verifies it. It returns the tree's undone changes, or why it
// failed.
func (r *run) tryTree(ctx workflow.Context, commit string) ([]string, string, bool) {
	short := contract.ShortSHA(commit)
	var eff activities.EffectiveResult
	err := workflow.ExecuteActivity(withOptions(ctx, effectiveOptions("Effective tree of "+short)), a.Effective,
		activities.EffectiveInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: commit}).Get(ctx, &eff)
	switch {
	case err != nil:
		return nil, "effective tree of " + short + ": " + errorMessage(err), false
	case eff.DependsOn != "":
		return nil, fmt.Sprintf("%s builds on %s, which was reverted", short, contract.ShortSHA(eff.DependsOn)), false
	}
	s := r.stacks[0]
	var out activities.ApplyResult
	err = workflow.ExecuteActivity(withOptions(ctx, pulumiOptions(fmt.Sprintf("Apply %s at %s (bisecting)", s.Name, short), 2*time.Hour, s)),
		a.Apply, activities.StackInput{RunID: r.st.ID, Stack: s, Commit: commit, Undone: eff.Undone, Notice: r.notice(ctx)}).Get(ctx, &out)
	if err != nil {
		return nil, fmt.Sprintf("apply %s: %s", s.Name, errorMessage(err)), false
	}
	if why, ok := r.verify(ctx, s, commit, eff.Undone); !ok {
		return nil, why, false
	}
	return eff.Undone, "", true
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
		if _, why, ok := r.tryTree(ctx, g.Commit); !ok {
			workflow.GetLogger(ctx).Warn("restore the batch's good prefix", "commit", g.Commit, "reason", why)
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
