package workflows

import (
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// batch is the runs a granted run deploys with its own (docs/batching.md).
type batch struct {
	// members wait behind the leader in its stack's queue, oldest first;
	// the newest one's effective tree is what the batch applies.
	members []contract.QueueEntry
	// ownUndone is the leader's own effective tree, for when the batch is
	// dropped and the leader deploys alone.
	ownUndone []string
	// bisected: the batch failed and bisect told each member it judged
	// (told); good is the stack's good state it left.
	bisected bool
	told     []string
	good     *contract.Deployed
}

func (b *batch) head() string { return b.members[len(b.members)-1].Commit }

// commit is the commit whose effective tree the run deploys: its own, or
// its batch's newest.
func (r *run) commit() string {
	if r.batch != nil {
		return r.batch.head()
	}
	return r.in.Commit
}

// formBatch takes the runs waiting behind this one into its deploy when
// its one stack batches (stacks[].batch) and nobody has to approve them:
// the first version batches only approval: auto stacks, whose runs are
// approved by policy whatever they plan (docs/batching.md#approvals).
// Without a batch the run deploys alone, as ever.
func (r *run) formBatch(ctx workflow.Context) {
	if len(r.stacks) != 1 {
		return
	}
	s := r.stacks[0]
	if s.Batch < 2 || s.Approval != config.ApprovalAuto {
		return
	}
	if workflow.GetVersion(ctx, VersionBatches, workflow.DefaultVersion, 1) != 1 {
		return
	}
	// Who waits now, not at the grant: runs enter while this one plans.
	var behind []contract.QueueEntry
	err := workflow.ExecuteActivity(withOptions(ctx, probeOptions("Who waits behind in "+s.Name)), a.QueueBehind,
		activities.QueueBehindInput{Stack: s.Name, RunID: r.st.ID}).Get(ctx, &behind)
	if err != nil || len(behind) == 0 {
		if err != nil {
			workflow.GetLogger(ctx).Warn("ask the queue who waits; deploying alone", "stack", s.Name, "error", err)
		}
		return
	}
	members := behind[:min(len(behind), s.Batch-1)]
	head := members[len(members)-1].Commit
	var eff activities.EffectiveResult
	err = workflow.ExecuteActivity(withOptions(ctx, effectiveOptions("Effective tree of the batch at "+contract.ShortSHA(head))), a.Effective,
		activities.EffectiveInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: head}).Get(ctx, &eff)
	commits := []string{r.in.Commit}
	for _, m := range members {
		commits = append(commits, m.Commit)
	}
	// A batch whose tree would not hold each member's change would say
	// "deployed" of a change it did not deploy: those deploy one by one.
	switch {
	case err != nil:
		workflow.GetLogger(ctx).Warn("effective tree of a batch; deploying alone", "head", head, "error", err)
		return
	case eff.DependsOn != "":
		return
	case slices.ContainsFunc(commits, func(c string) bool { return slices.Contains(eff.Undone, c) }):
		return
	}
	r.batch = &batch{members: members, ownUndone: r.st.Undone}
	r.st.Undone = eff.Undone
	r.st.Batch = &contract.Batched{Leader: r.st.ID, LeaderCommit: r.in.Commit, Head: head, Members: commits}
	r.notify(ctx, notify.Event{Step: "batch", Detail: fmt.Sprintf("deploying %d queued changes in one plan and one up, at %s: %s",
		len(commits), contract.ShortSHA(head), shortList(commits))})
}

// batchAlone says why the batch's plan must not deploy as one: a policy
// denies it or wants an approval, which a batch does not ask for (the
// members then deploy one by one, each asking for its own). Empty when
// it may.
func (r *run) batchAlone() string {
	if reason := policyDenied(r.st.Plans); reason != "" {
		return "a policy denies the batch's plan (" + reason + ")"
	}
	ap := approvalFor(r.stacks, r.st.Plans)
	withPolicy(&ap, r.stacks, r.st.Plans)
	if ap.Required {
		return "the batch's plan needs an approval"
	}
	return ""
}

// dropBatch makes the run deploy its own commit alone; the others wait in
// the queue and deploy after it, each on its own run.
func (r *run) dropBatch(ctx workflow.Context, why string) {
	r.notify(ctx, notify.Event{Step: "batch dropped", Detail: fmt.Sprintf("%s: deploying %s alone; the others deploy after it",
		why, contract.ShortSHA(r.in.Commit))})
	r.st.Undone = r.batch.ownUndone
	r.batch, r.st.Batch = nil, nil
	r.st.Plans, r.st.Applies, r.st.Decision, r.st.Approvals, r.st.Verifications, r.replan = nil, nil, nil, nil, nil, ""
}

// batchFailed handles a batch that failed to apply or verify: the stack
// is restored to its last good state, as a run's rollback does, then the
// batch is bisected to find the commit that broke it (bisect.go).
func (r *run) batchFailed(ctx workflow.Context, reason string) ChangeResult {
	r.st.Error = reason
	r.enter(ctx, contract.StateRollingBack, fmt.Sprintf("Restoring %s after its batch failed…", strings.Join(r.st.Stacks, ", ")))
	r.notify(ctx, notify.Event{Kind: notify.KindRollingBack, Step: "batch failed", Detail: reason + "; restoring, then bisecting"})
	for _, s := range r.stacks {
		r.st.Restored = append(r.st.Restored, r.restore(ctx, s))
	}
	return r.bisect(ctx, reason)
}

// endBatch tells each member that the batch deployed it: the leader's
// outcome when it deployed the batch's tree (succeeded) or found nothing
// to do (no-op). For any other ending the members were not deployed and
// stay queued: each deploys on its own run.
func (r *run) endBatch(ctx workflow.Context, res ChangeResult) {
	if r.batch == nil || r.batch.bisected || (res.State != contract.StateSucceeded && res.State != contract.StateNoOp) {
		return
	}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	b := *r.st.Batch
	b.State = res.State
	for _, m := range r.batch.members {
		if err := workflow.SignalExternalWorkflow(ctx, m.RunID, "", contract.BatchedSignal, b).Get(ctx, nil); err != nil {
			// It ended meanwhile (cancelled): its own ending stands.
			workflow.GetLogger(ctx).Warn("tell a batch member", "run", m.RunID, "error", err)
		}
	}
}

// batched ends a waiting run that a batch deployed. The run asks the
// leader the signal names for its own record (CheckBatched) and takes
// that, not the signal, which anyone who can reach the namespace can send;
// a signal the leader does not confirm is refused and the run stays
// queued (ok false). Strings are bounded before they reach the status and
// the messages, and the reason is written here, not taken from the sender.
func (r *run) batched(ctx workflow.Context, b contract.Batched) (ChangeResult, bool) {
	workflow.GetVersion(ctx, VersionBatches, workflow.DefaultVersion, 1)
	if workflow.GetVersion(ctx, VersionCheckBatched, workflow.DefaultVersion, 1) == 1 {
		leader := bounded(b.Leader, maxRunIDLen)
		var confirmed contract.Batched
		err := workflow.ExecuteActivity(withOptions(ctx, probeOptions("Ask run "+leader+" how its batch ended")), a.CheckBatched,
			activities.BatchCheckInput{Leader: leader, Commit: r.in.Commit}).Get(ctx, &confirmed)
		if err != nil {
			why := "a batched signal was refused: " + errorMessage(err)
			r.refuse(bounded(why, maxFailureLen))
			workflow.GetLogger(ctx).Warn("batched signal refused", "leader", leader, "error", err)
			return ChangeResult{}, false
		}
		b = confirmed
	}
	b.Leader = bounded(b.Leader, maxRunIDLen)
	b.LeaderCommit, b.Head = bounded(contract.ShortSHA(b.LeaderCommit), 7), bounded(contract.ShortSHA(b.Head), 7)
	if len(b.Members) > contract.MaxBehind+1 {
		b.Members = b.Members[:contract.MaxBehind+1]
	}
	for i, m := range b.Members {
		b.Members[i] = bounded(contract.ShortSHA(m), 7)
	}
	b.Failure = bounded(b.Failure, maxFailureLen)
	b.Revert = bounded(b.Revert, 40)
	state, reason := contract.StateSucceeded, fmt.Sprintf("deployed in batch with %s: %d changes applied together at %s and verified by run %s",
		b.LeaderCommit, len(b.Members), b.Head, b.Leader)
	switch {
	case b.State == contract.StateNoOp:
		state, reason = contract.StateNoOp, fmt.Sprintf("in batch with %s: the stack already matched %s", b.LeaderCommit, b.Head)
	case b.State == contract.StateRolledBack || b.State == contract.StateRollbackFailed:
		// Run b.Leader restored the stack and reverted this commit.
		state, reason = b.State, fmt.Sprintf("its batch with %s failed and bisection by run %s found this commit: %s", b.LeaderCommit, b.Leader, b.Failure)
		r.st.Error, r.st.RevertCommit = reason, b.Revert
	case b.Bisected:
		reason = fmt.Sprintf("deployed in batch with %s: its batch failed and bisection by run %s deployed and verified this change", b.LeaderCommit, b.Leader)
	}
	b.State, b.Reason = state, reason
	r.st.Batch = &b
	res := r.finish(ctx, state, reason)
	res.RevertCommit = r.st.RevertCommit
	return res, true
}

func shortList(commits []string) string {
	out := make([]string, len(commits))
	for i, c := range commits {
		out[i] = contract.ShortSHA(c)
	}
	return strings.Join(out, ", ")
}

// maxFailureLen bounds the failure a batch's leader reports to a member.
const maxFailureLen = 2000

// maxRunIDLen bounds a run ID a signal names: change IDs are
// change/<repo>/<branch>/<sha>.
const maxRunIDLen = 200

// bounded keeps the first n bytes of s, without control characters.
func bounded(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return strings.ToValidUTF8(s[:min(n, len(s))], "")
}
