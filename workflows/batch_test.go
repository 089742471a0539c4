package workflows

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/policy"
)

// batchStack is an approval: auto stack that deploys up to n queued
// changes together.
func batchStack(n int) config.Stack {
	st := stack("web", config.ApprovalAuto)
	st.Batch = n
	return st
}

// waiting mocks who waits behind the run in web's queue, and returns
// the collector of the batched signals the run sends.
func (s *ChangeSuite) waiting(runs ...string) map[string]contract.Batched {
	var behind []contract.QueueEntry
	for _, r := range runs {
		behind = append(behind, contract.QueueEntry{RunID: "change/" + r, Commit: r, Alone: true})
	}
	s.env.OnActivity(a.QueueBehind, mock.Anything, activities.QueueBehindInput{Stack: "web", RunID: "default-test-workflow-id"}).
		Return(behind, nil).Once()
	return signalled[contract.Batched](s, contract.BatchedSignal)
}

// signalled collects what the run signals other runs under name, by run.
func signalled[T any](s *ChangeSuite, name string) map[string]T {
	got := map[string]T{}
	s.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", name, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			got[id] = arg.(T)
			return nil
		}).Maybe()
	return got
}

// effectiveAt mocks the effective tree of a batch's newest commit.
func (s *ChangeSuite) effectiveAt(commit string, res activities.EffectiveResult) {
	s.env.OnActivity(a.Effective, mock.Anything, activities.EffectiveInput{Branch: "main", Commit: commit}).Return(res, nil).Once()
}

// A granted run on a batching stack deploys the runs waiting behind it,
// up to batch in all, with one plan and one up of the newest one's tree,
// tells each it was deployed, and takes them out of the queue.
func (s *ChangeSuite) TestBatchDeploysQueuedRunsInOneUp() {
	s.inspect(batchStack(3))
	told := s.waiting("c2", "c3", "c4") // c4 is past the batch's size
	s.effectiveAt("c3", activities.EffectiveResult{Undone: []string{"old"}})
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool {
		return in.Commit == "c3" && len(in.Undone) == 1
	})).Return(activities.PlanResult{Stack: "web", Update: 3}, nil).Once()
	s.applyAt("web", "c3")
	s.verifyAt("web", "c3", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal("deployed in batch with c2, c3: led the batch of 3 changes, applied together at c3 and verified", res.Reason)
	st := s.status()
	s.Require().NotNil(st.Batch)
	s.Equal([]string{sha, "c2", "c3"}, st.Batch.Members)
	s.Equal([]string{"change/c2", "change/c3"}, keys(told), "each member hears it was deployed; c4 waits for the next batch")
	s.Equal(contract.StateSucceeded, told["change/c2"].State)
	s.Equal(contract.Release{RunID: st.ID, Deployed: &contract.Deployed{Commit: "c3", Undone: []string{"old"}, RunID: st.ID},
		Batched: []string{"change/c2", "change/c3"}}, s.released["web"], "the queue's last good state is the batch's tree, and its members leave")
}

// A waiting run a batch deployed ends succeeded on the batch's word,
// without planning or applying anything itself; the reason is its own,
// not the signal's.
func (s *ChangeSuite) TestBatchMemberEndsWithItsBatch() {
	s.env.SetWorkflowRunTimeout(time.Hour) // a member that ignores its batch waits for a grant forever
	s.inspectOnly(batchStack(8))
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.BatchedSignal, contract.Batched{Leader: "change/c1", LeaderCommit: "c1aaaaaaaa", Head: "c9bbbbbbbb",
			Members: []string{"c1aaaaaaaa", sha, "c9bbbbbbbb"}, State: contract.StateSucceeded, Reason: "forged\nreason"})
	}, 0)

	s.leaders(map[string]leaderRecord{"change/c1": {contract.StateSucceeded, &contract.Batched{Leader: "change/c1", LeaderCommit: "c1aaaaaaaa",
		Head: "c9bbbbbbbb", Members: []string{"c1aaaaaaaa", sha, "c9bbbbbbbb"}}}})

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal("deployed in batch with c1aaaaa: 3 changes applied together at c9bbbbb and verified by run change/c1", res.Reason)
	st := s.status()
	s.Require().NotNil(st.Batch)
	s.Equal("c9bbbbb", st.Batch.Head)
	s.Empty(st.Held)
	s.Equal(contract.Release{RunID: st.ID}, s.released["web"], "it leaves the queue and deployed nothing itself")
}

// leaderRecord is what a leader's status says: its state and batch.
type leaderRecord struct {
	state string
	batch *contract.Batched
}

// leaders answers CheckBatched from the named runs' records, by the
// activity's own rule; a run not named has no batch.
func (s *ChangeSuite) leaders(records map[string]leaderRecord) {
	s.env.OnActivity(a.CheckBatched, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.BatchCheckInput) (contract.Batched, error) {
			rec := records[in.Leader]
			return activities.LeaderOutcome(in.Leader, in.Commit, rec.state, rec.batch)
		}).Maybe()
}

// A batched signal its leader does not confirm is refused: anyone who can
// reach the namespace can send one. The run stays queued and takes the
// outcome its real leader records, not what a signal says.
func (s *ChangeSuite) TestBatchedSignalIsCheckedWithTheLeader() {
	s.env.SetWorkflowRunTimeout(time.Hour)
	s.inspectOnly(batchStack(8))
	s.leaders(map[string]leaderRecord{
		"change/c0": {contract.StateFailed, nil}, // a real run that leads no batch
		"change/c1": {contract.StateRollingBack, &contract.Batched{Leader: "change/c1", LeaderCommit: "c1aaaaaaaa", Head: "c9bbbbbbbb",
			Members: []string{"c1aaaaaaaa", sha, "c9bbbbbbbb"}, Bisected: true,
			Outcomes: []contract.BatchOutcome{{Commit: sha, State: contract.StateRolledBack, Failure: "verify web: page is broken", Revert: "r1"}}}},
	})
	forged := contract.Batched{Leader: "change/c0", LeaderCommit: "c0", Head: "c9", Members: []string{"c0", sha, "c9"}, State: contract.StateSucceeded}
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.BatchedSignal, forged) }, time.Minute)
	lie := forged
	lie.Leader = "change/c1" // the real leader, but the signal lies about the outcome
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.BatchedSignal, lie) }, 2*time.Minute)

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State, "the leader's record, not the signal's state")
	s.Equal("r1", res.RevertCommit)
	st := s.status()
	s.Require().Len(st.Refusals, 1)
	s.Contains(st.Refusals[0], "run change/c0 does not confirm it deployed")
	s.Contains(st.Detail, "bisection by run change/c1 found this commit: verify web: page is broken")
}

// fakeStack answers Effective, Apply, Verify, Inspect and Revert like a
// branch whose commits are the run's then members, where the bad one's
// change fails verification wherever it is deployed, until reverted.
type fakeStack struct {
	s        *ChangeSuite
	bad      string
	reverted bool
	applied  []string    // each up's commit, and its undone changes after a /
	at       []time.Time // when (test clock) each up began
	// engineFails: an up of this commit fails for a reason that is not
	// the tree's (a transient error that outlasted its retries).
	engineFails string
	// previewed are the commits planned: the batch's, then each trial's.
	previewed []string
}

func (s *ChangeSuite) fakeStack(bad string, order ...string) *fakeStack {
	f := &fakeStack{s: s, bad: bad}
	// A tree holds the bad change when its commit is the bad one or after it.
	holds := func(commit string, undone []string) bool {
		for _, c := range order {
			if c == f.bad {
				return !slices.Contains(undone, f.bad)
			}
			if c == commit {
				return false
			}
		}
		return false
	}
	s.env.OnActivity(a.Effective, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EffectiveInput) (activities.EffectiveResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if f.reverted && slices.Index(order, in.Commit) > slices.Index(order, f.bad) {
			return activities.EffectiveResult{Undone: []string{f.bad}}, nil
		}
		return activities.EffectiveResult{}, nil
	})
	s.env.OnActivity(a.Apply, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StackInput) (activities.ApplyResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		f.applied = append(f.applied, strings.Join(append([]string{in.Commit}, in.Undone...), "/"))
		f.at = append(f.at, s.env.Now())
		if in.Commit == f.engineFails {
			return activities.ApplyResult{}, temporal.NewNonRetryableApplicationError("apply stack web (prod) at "+in.Commit+
				": 503 Service Unavailable (still failing after 10m0s; stacks[].apply_retry_for of web is 10m0s)",
				activities.ErrPulumiTransient, nil, activities.ApplyFailure{Began: true})
		}
		return activities.ApplyResult{Stack: in.Stack.Name, Update: 1}, nil
	})
	s.env.OnActivity(a.Verify, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VerifyInput) (activities.VerifyResult, error) {
		passed := !holds(in.Commit, in.Undone)
		return activities.VerifyResult{Stack: in.Stack.Name, Passed: passed, Results: []activities.CheckResult{{Check: "no_changes", Passed: passed, Detail: "page"}}}, nil
	})
	s.env.OnActivity(a.Inspect, mock.Anything, mock.MatchedBy(func(in activities.InspectInput) bool { return in.Commit != sha })).Return(
		func(_ context.Context, in activities.InspectInput) (activities.InspectResult, error) {
			return activities.InspectResult{Commit: activities.Commit{SHA: in.Commit, Subject: "Change " + in.Commit}}, nil
		}).Maybe()
	s.env.OnActivity(a.Revert, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RevertInput) (activities.RevertResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.Commit != f.bad {
			return activities.RevertResult{}, fmt.Errorf("reverted %s, not the bad %s", in.Commit, f.bad)
		}
		f.reverted = true
		return activities.RevertResult{Revert: "feedface"}, nil
	}).Maybe() // a bisection that stops reverts nothing; the tests that revert check the revert
	s.env.OnActivity(a.Preview, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StackInput) (activities.PlanResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		f.previewed = append(f.previewed, in.Commit)
		return activities.PlanResult{Stack: "web", Update: 2, Steps: "steps of " + in.Commit}, nil
	})
	return f
}

// failingBatch is a run granted web (batch: the run and its members),
// whose last good state is "good", with members waiting behind it: the
// commits' trees fail verification from bad on (fakeStack). It returns
// the collector of what the members are told, and the stack.
func (s *ChangeSuite) failingBatch(bad string, members ...string) (map[string]contract.Batched, *fakeStack) {
	s.lastGood = &contract.Deployed{Commit: "good", RunID: "change/good"}
	s.inspectOnly(batchStack(len(members) + 1))
	s.grant(0, "web")
	told := s.waiting(members...)
	return told, s.fakeStack(bad, append([]string{sha}, members...)...)
}

// A batch that fails verification restores the stack's last good state,
// then bisects: c2 passes, c3 fails, so c3 broke it; c3 alone is
// reverted and c4 deploys without it. Each run hears its own outcome.
func (s *ChangeSuite) TestFailedBatchIsBisected() {
	told, f := s.failingBatch("c3", "c2", "c3", "c4")

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Equal([]string{"c4", "good", "c2", "c3", "c4/c3"}, f.applied,
		"the batch, the restore, then halves: c2 passes, c3 fails; the rest without c3")
	s.Equal([]string{"c4", "c2", "c3", "c4"}, f.previewed, "each trial tree is planned and judged before it is applied")
	s.Equal(contract.StateSucceeded, told["change/c2"].State)
	s.Equal(contract.StateRolledBack, told["change/c3"].State)
	s.Equal("feedface", told["change/c3"].Revert)
	s.Contains(told["change/c3"].Failure, "verification of web failed")
	s.Equal(contract.StateSucceeded, told["change/c4"].State)
	st := s.status()
	s.Equal(contract.Release{RunID: st.ID, Deployed: &contract.Deployed{Commit: "c4", Undone: []string{"c3"}, RunID: st.ID},
		Batched: []string{"change/c2", "change/c4", "change/c3"}}, s.released["web"])
}

// When the leader's own commit broke the batch, the leader rolls back
// with its revert, and the members after it deploy without it.
func (s *ChangeSuite) TestBisectionFindsTheLeader() {
	told, f := s.failingBatch(sha, "c2", "c3")

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State, res.Reason)
	s.Equal("feedface", res.RevertCommit)
	s.Equal([]string{"c3", "good", sha, "c3/" + sha}, f.applied)
	s.Equal(contract.StateSucceeded, told["change/c2"].State)
	s.Equal(contract.StateSucceeded, told["change/c3"].State)
}

// A batch whose plan fails (a member's program may not compile) is
// dropped: the leader plans and deploys alone.
func (s *ChangeSuite) TestBatchPlanFailureDeploysAlone() {
	s.inspect(batchStack(4))
	told := s.waiting("c2")
	s.effectiveAt("c2", activities.EffectiveResult{})
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == "c2" })).
		Return(activities.PlanResult{}, temporal.NewNonRetryableApplicationError("preview stack web (prod) at c2: error: unknown resource type", activities.ErrPulumiProgram, nil)).Once()
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == sha })).
		Return(activities.PlanResult{Stack: "web", Update: 1}, nil).Once()
	s.apply("web")
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, "its own commit is fine: c2's run fails on its own")
	s.Empty(told)
	s.Contains(s.notes, "batch dropped")
}

func keys(m map[string]contract.Batched) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// A member bisection found broke its batch ends rolled back with the
// revert its leader pushed, and the failure bounded.
func (s *ChangeSuite) TestBatchMemberFoundBad() {
	s.env.SetWorkflowRunTimeout(time.Hour)
	s.inspectOnly(batchStack(8))
	b := contract.Batched{Leader: "change/c1", LeaderCommit: "c1aaaaaaaa", Head: "c9bbbbbbbb", Members: []string{"c1aaaaaaaa", sha, "c9bbbbbbbb"}}
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.BatchedSignal, b) }, 0)
	b.Bisected = true
	b.Outcomes = []contract.BatchOutcome{{Commit: sha, State: contract.StateRolledBack,
		Failure: "verification of web failed\x1b[31m" + strings.Repeat("x", 5000), Revert: "feedface"}}
	s.leaders(map[string]leaderRecord{"change/c1": {contract.StateSucceeded, &b}})

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State)
	s.Equal("feedface", res.RevertCommit)
	s.True(strings.HasPrefix(res.Reason, "its batch with c1aaaaa failed and bisection by run change/c1 found this commit: verification of web failed[31m"), res.Reason)
	s.Less(len(res.Reason), 2200, "the failure is bounded")
	s.Equal("feedface", s.status().RevertCommit)
}

// A batch's plan that a policy wants approved asks once for the batch,
// though the stack is approval: auto; its approval expiring ends the
// leader and every member expired, with nothing applied.
func (s *ChangeSuite) TestBatchNeedingApprovalAsksOnce() {
	s.inspect(batchStack(4))
	dba := policy.Requirement{Rule: "db.require", Origin: policy.OriginRepo, Group: "dba", Count: 1, Approvers: []string{"dave"}}
	told, _ := s.askingBatch(nil, requiring("web", dba), "c2", "c3")

	res := s.run()
	s.Equal(contract.StateExpired, res.State, res.Reason)
	s.Len(s.asks(), 1)
	s.NotContains(s.notes, "batch dropped")
	s.Equal(contract.StateExpired, told["change/c2"].State)
	s.Equal(contract.StateExpired, told["change/c3"].State)
	st := s.status()
	s.Equal(contract.Release{RunID: st.ID, Batched: []string{"change/c2", "change/c3"}}, s.released["web"])
}

// Bisection deploys no tree nobody approved: on an on-destructive stack a
// harmless batch went auto, but the first trial tree deletes something,
// which would need a decision nobody gave for it. Bisection stops there:
// nothing of the trial is applied, nothing is reverted, and the members
// stay queued to deploy one by one, each asking for its own approval.
func (s *ChangeSuite) TestBisectionDeploysNoTreeUnapproved() {
	s.lastGood = &contract.Deployed{Commit: "good", RunID: "change/good"}
	s.inspectOnly(askingBatchStack(4, config.ApprovalOnDestructive, "bob"))
	s.grant(0, "web")
	told := s.waiting("c2", "c3", "c4")
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == "c2" })).
		Return(activities.PlanResult{Stack: "web", Delete: 1, Steps: "a delete"}, nil).Once()
	f := s.fakeStack("c3", sha, "c2", "c3", "c4")

	res := s.run()
	s.Equal(contract.StateFailed, res.State, res.Reason)
	s.Contains(res.Reason, "needs a decision")
	s.Equal([]string{"c4", "good"}, f.applied, "the batch and the restore: no trial tree")
	s.Empty(told, "no member is told: each deploys on its own run")
	s.False(f.reverted)
	s.True(s.status().Batch.Bisected, "its ending confirms no member's signal (CheckBatched)")
}

// A leader named by a batch-pending signal is printed in a command for
// approvers: only a change run's ID of plain characters is kept.
func TestPlainChangeID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"change/infra/main/3f2a91c0d1": true,
		"change/x;rm -rf ~":            false,
		"change/$(id)":                 false,
		"drift/web":                    false,
		"change/" + strings.Repeat("a", maxRunIDLen): false,
	} {
		if got := plainChangeID(id); got != want {
			t.Errorf("plainChangeID(%q) = %v, want %v", id, got, want)
		}
	}
}
