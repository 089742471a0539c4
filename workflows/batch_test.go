package workflows

import (
	"slices"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
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
	told := map[string]contract.Batched{}
	s.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.BatchedSignal, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			told[id] = arg.(contract.Batched)
			return nil
		}).Maybe()
	return told
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

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal("deployed in batch with c1aaaaa: 3 changes applied together at c9bbbbb and verified by run change/c1", res.Reason)
	st := s.status()
	s.Require().NotNil(st.Batch)
	s.Equal("c9bbbbb", st.Batch.Head)
	s.Empty(st.Held)
	s.Equal(contract.Release{RunID: st.ID}, s.released["web"], "it leaves the queue and deployed nothing itself")
}

// A batch that fails verification restores the stack's last good state,
// then the leader deploys its own commit alone; the members are not told
// anything and stay queued, each to deploy on its own run.
func (s *ChangeSuite) TestFailedBatchRestoresAndDeploysAlone() {
	s.lastGood = &contract.Deployed{Commit: "good", RunID: "change/good"}
	s.inspect(batchStack(4))
	told := s.waiting("c2", "c3")
	s.effectiveAt("c3", activities.EffectiveResult{})
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == "c3" })).
		Return(activities.PlanResult{Stack: "web", Update: 2}, nil).Once()
	s.applyAt("web", "c3")
	s.verifyAt("web", "c3", false)
	s.applyAt("web", "good")
	s.verifyAt("web", "good", true).Once()
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == sha })).
		Return(activities.PlanResult{Stack: "web", Update: 1}, nil).Once()
	s.apply("web")
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal("applied and verified alone after its batch failed", res.Reason)
	s.Empty(told, "no member was deployed")
	st := s.status()
	s.Nil(st.Batch)
	s.Equal(contract.Release{RunID: st.ID, Deployed: &contract.Deployed{Commit: sha, RunID: st.ID}}, s.released["web"],
		"the members stay queued")
	s.Contains(s.notes, "batch failed")
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
