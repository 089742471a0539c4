package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

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
	// asks: the run may ask one approval for the batch, and bisection
	// waits for windows and stops on an engine failure (version
	// batch-approvals); runs from before dropped a batch that needed an
	// approval. asked: it asked, so its decision, or its expiry, is
	// each member's; pending: the members heard that it asks.
	asks, asked, pending bool
	// engineFailed: the batch's own up failed for a reason that is not
	// its tree's (since batch-approvals): it is not bisected.
	engineFailed bool
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
// its one stack batches (stacks[].batch). On a stack whose plan may need
// an approval, the batch asks once for every change in it
// (docs/batching.md#approvals): runs queue before they plan, so no member
// is approved yet when the batch forms. Without a batch the run deploys
// alone, as ever.
func (r *run) formBatch(ctx workflow.Context) {
	if len(r.stacks) != 1 {
		return
	}
	s := r.stacks[0]
	if s.Batch < 2 {
		return
	}
	// Stacks that ask batch since batch-approvals, asked first: before
	// it, such a run (batch refused by the config) returned here.
	if s.Approval != config.ApprovalAuto && workflow.GetVersion(ctx, VersionBatchApprovals, workflow.DefaultVersion, 1) != 1 {
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
	r.batch = &batch{members: members, ownUndone: r.st.Undone,
		asks: workflow.GetVersion(ctx, VersionBatchApprovals, workflow.DefaultVersion, 1) == 1}
	r.st.Undone = eff.Undone
	r.st.Batch = &contract.Batched{Leader: r.st.ID, LeaderCommit: r.in.Commit, Head: head, Members: commits}
	r.notify(ctx, notify.Event{Step: "batch", Detail: fmt.Sprintf("deploying %d queued changes in one plan and one up, at %s: %s",
		len(commits), contract.ShortSHA(head), shortList(commits))})
}

// batchAlone says why the batch's plan must not deploy as one: a policy
// denies it, or it needs an approval and the run is from before batches
// asked (then the members deploy one by one, each asking for its own).
// Empty when it may; when the plan needs an approval, the batch is
// prepared to ask once for every change in it (askForBatch).
func (r *run) batchAlone(ctx workflow.Context) string {
	if reason := policyDenied(r.st.Plans); reason != "" {
		return "a policy denies the batch's plan (" + reason + ")"
	}
	ap := approvalFor(r.stacks, r.st.Plans)
	withPolicy(&ap, r.stacks, r.st.Plans)
	switch {
	case !ap.Required || nothingToDo(r.st.Plans):
		return ""
	case !r.batch.asks:
		return "the batch's plan needs an approval"
	}
	return r.askForBatch(ctx, ap)
}

// askForBatch readies the one approval a batch asks for: the approvers
// are shown every commit in it, and four eyes holds against each
// (authorize), so the run reads who wrote them; and each member hears
// that the batch's decision will be its own, so its status says where to
// decide. A batch whose commits cannot be read deploys alone.
func (r *run) askForBatch(ctx workflow.Context, ap Approval) string {
	if r.st.BatchCommits == nil {
		shas := make([]string, len(r.batch.members))
		for i, m := range r.batch.members {
			shas[i] = m.Commit
		}
		var commits []activities.Commit
		err := workflow.ExecuteActivity(withOptions(ctx, gitOptions("Read the commits of the batch")), a.Commits,
			activities.CommitsInput{Repo: r.in.Repo, Branch: r.in.Branch, Commits: shas}).Get(ctx, &commits)
		if err != nil {
			return "read the batch's commits for its approval: " + errorMessage(err)
		}
		r.st.BatchCommits = append([]activities.Commit{r.st.Commit}, commits...)
	}
	r.batch.asked = true
	if r.batch.pending {
		return ""
	}
	r.batch.pending = true
	p := contract.BatchPending{Leader: r.st.ID, LeaderCommit: contract.ShortSHA(r.in.Commit), Head: contract.ShortSHA(r.batch.head()),
		Changes: len(r.st.BatchCommits), Deadline: workflow.Now(ctx).Add(ap.Timeout)}
	var sent []workflow.Future
	for _, m := range r.batch.members {
		sent = append(sent, workflow.SignalExternalWorkflow(ctx, m.RunID, "", contract.BatchPendingSignal, p))
	}
	for i, f := range sent {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("tell a batch member its batch asks", "run", r.batch.members[i].RunID, "error", err)
		}
	}
	return ""
}

// batchLines are the changes the batch's approval covers, as the request
// lists them: bounded, since they come from commits.
func (r *run) batchLines() []string {
	if r.batch == nil || !r.batch.asked {
		return nil
	}
	lines := make([]string, len(r.st.BatchCommits))
	for i, c := range r.st.BatchCommits {
		lines[i] = fmt.Sprintf("%s %s (%s)", contract.ShortSHA(c.SHA), bounded(c.Subject, 120), bounded(c.AuthorName, 80))
	}
	return lines
}

// dropBatch makes the run deploy its own commit alone; the others wait in
// the queue and deploy after it, each on its own run.
func (r *run) dropBatch(ctx workflow.Context, why string) {
	r.notify(ctx, notify.Event{Step: "batch dropped", Detail: fmt.Sprintf("%s: deploying %s alone; the others deploy after it",
		why, contract.ShortSHA(r.in.Commit))})
	r.st.Undone = r.batch.ownUndone
	r.batch, r.st.Batch = nil, nil
	r.st.Plans, r.st.Applies, r.st.Decision, r.st.Approvals, r.st.Verifications, r.replan = nil, nil, nil, nil, nil, ""
	r.st.BatchCommits = nil
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
	if r.batch.engineFailed {
		// The engine or the infrastructure failed, not a commit: nothing
		// is bisected or reverted, and the members stay queued to deploy
		// one by one, where a failure is each one's own.
		r.notify(ctx, notify.Event{Step: "batch not bisected", Detail: "the up failed for a reason that is not the tree's: " +
			"nothing is reverted; the other changes deploy one by one"})
		return r.finish(ctx, contract.StateFailed, fmt.Sprintf(
			"%s; this is not the tree's fault, so the batch was not bisected: the stack is restored, nothing is reverted, and %s stay queued to deploy on their own runs",
			reason, shortList(r.batch.memberCommits())))
	}
	return r.bisect(ctx, reason)
}

func (b *batch) memberCommits() []string {
	out := make([]string, len(b.members))
	for i, m := range b.members {
		out[i] = m.Commit
	}
	return out
}

// endBatch tells each member how the batch ended for it: deployed, when
// the leader deployed the batch's tree (succeeded) or found nothing to
// do (no-op); rejected or expired, when the leader asked for the batch
// and that was the decision, which is each member's (docs/batching.md).
// For any other ending the members were not deployed and stay queued:
// each deploys on its own run.
func (r *run) endBatch(ctx workflow.Context, res ChangeResult) {
	if r.batch == nil || r.batch.bisected {
		return
	}
	decided := r.batch.asked && (res.State == contract.StateRejected || res.State == contract.StateExpired)
	if !decided && res.State != contract.StateSucceeded && res.State != contract.StateNoOp {
		return
	}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	// The leader's status is the record the members check the signal by
	// (CheckBatched): the decision goes there first.
	if r.batch.asks {
		r.st.Batch.Decision = batchDecision(r.st.Decision, r.st.Approvals)
		if res.State == contract.StateExpired {
			r.st.Batch.Timeout = r.st.Approval.Timeout
		}
	}
	b := *r.st.Batch
	b.State = res.State
	for _, m := range r.batch.members {
		if err := workflow.SignalExternalWorkflow(ctx, m.RunID, "", contract.BatchedSignal, b).Get(ctx, nil); err != nil {
			// It ended meanwhile (cancelled): its own ending stands.
			workflow.GetLogger(ctx).Warn("tell a batch member", "run", m.RunID, "error", err)
		}
		r.batch.told = append(r.batch.told, m.RunID)
	}
}

// batchDecision is the leader's decision as its members record it: who
// approved (everyone, when several approvals were needed) or rejected.
func batchDecision(d *Decision, approvals []Decision) *contract.BatchDecision {
	if d == nil {
		return nil
	}
	return &contract.BatchDecision{Approve: d.Approve, User: approvedBy(approvals, d), Comment: d.Comment, At: d.At,
		Via: d.Via, Method: d.Method, Auto: d.Auto}
}

// batched ends a waiting run that a batch deployed, or whose batch's
// decision (rejected, expired) is its own. The run asks the
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
		err := workflow.ExecuteActivity(withOptions(ctx, checkBatchedOptions("Ask run "+leader+" how its batch ended")), a.CheckBatched,
			activities.BatchCheckInput{Leader: leader, Commit: r.in.Commit}).Get(ctx, &confirmed)
		if err != nil {
			why := "a batched signal was refused: " + errorMessage(err)
			r.refuse(bounded(why, maxFailureLen))
			workflow.GetLogger(ctx).Warn("batched signal refused", "leader", leader, "error", err)
			return ChangeResult{}, false
		}
		b = confirmed
	}
	asks := workflow.GetVersion(ctx, VersionBatchApprovals, workflow.DefaultVersion, 1) == 1
	r.st.BatchPending = nil
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
	b.Decision = r.batchDecided(ctx, asks, b.Decision)
	state, reason := contract.StateSucceeded, fmt.Sprintf("deployed in batch with %s: %d changes applied together at %s and verified by run %s",
		b.LeaderCommit, len(b.Members), b.Head, b.Leader)
	switch {
	case asks && b.State == contract.StateRejected:
		state, reason = b.State, fmt.Sprintf("rejected in batch with %s (run %s)", b.LeaderCommit, b.Leader)
		if d := b.Decision; d != nil {
			reason = fmt.Sprintf("rejected in batch with %s by %s %s", b.LeaderCommit, d.User, quote(d.Comment))
		}
	case asks && b.State == contract.StateExpired:
		state, reason = b.State, fmt.Sprintf("no decision within %s on the batch with %s (run %s): nothing was deployed", b.Timeout, b.LeaderCommit, b.Leader)
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

// batchDecided records the batch's decision, which the leader asked for
// every change in it, as the run's own, bounded; the approver is then
// searchable and in the audit as for a run decided alone.
func (r *run) batchDecided(ctx workflow.Context, asks bool, d *contract.BatchDecision) *contract.BatchDecision {
	if d == nil || !asks {
		return nil
	}
	b := *d
	b.User, b.Comment, b.Via, b.Method = bounded(b.User, maxApproverLen), bounded(b.Comment, maxComment), bounded(b.Via, 100), bounded(b.Method, 20)
	r.st.Decision = &Decision{Approve: b.Approve, User: b.User, Comment: b.Comment, At: b.At, Via: b.Via, Method: b.Method, Auto: b.Auto}
	if err := workflow.UpsertTypedSearchAttributes(ctx, contract.ChangeApprover.ValueSet(b.User)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert approver", "error", err)
	}
	return &b
}

// listenForBatch keeps what the leader of the run's batch says while it
// asks for the batch's approval (askForBatch): the status then says
// where to decide, and a decision sent here is refused pointing there
// (authorize). Only the status changes: nothing is scheduled.
func (r *run) listenForBatch(ctx workflow.Context) {
	pending := workflow.GetSignalChannel(ctx, contract.BatchPendingSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var p contract.BatchPending
			pending.Receive(ctx, &p)
			if r.st.State != contract.StateQueued {
				continue // granted or ended meanwhile: no longer in a batch
			}
			// Anyone who can reach the namespace can send this signal,
			// and its leader is printed in a command for approvers to
			// run: only a change run's ID of plain characters is kept.
			if !plainChangeID(p.Leader) {
				r.refuse("a batch-pending signal naming a leader that is not a change run was ignored")
				continue
			}
			p.Leader, p.LeaderCommit, p.Head = bounded(p.Leader, maxRunIDLen), bounded(p.LeaderCommit, 7), bounded(p.Head, 7)
			p.Changes = min(max(p.Changes, 0), contract.MaxBehind+1)
			r.st.BatchPending = &p
			r.detail(ctx, fmt.Sprintf("Waiting for the approval of its batch: run %s (commit %s) asks once for all %d changes until %s; decide that run",
				p.Leader, p.LeaderCommit, p.Changes, p.Deadline.UTC().Format(time.RFC3339)))
		}
	})
}

// plainChangeID says whether id names a change run in characters a
// shell passes as they are (change/<repo>/<branch>/<sha>).
func plainChangeID(id string) bool {
	if !strings.HasPrefix(id, "change/") || len(id) > maxRunIDLen {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-", r))
	}) < 0
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

// maxApproverLen bounds who decided a batch, as a member records it:
// several approvers, each a people entry or Slack ID.
const maxApproverLen = 500

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
