package workflows

import (
	"context"
	"strings"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// askingBatchStack is a stack of the given approval policy that deploys up
// to n queued changes together, approved by approvers.
func askingBatchStack(n int, approval string, approvers ...string) config.Stack {
	st := stack("web", approval, approvers...)
	st.Batch = n
	return st
}

// batchCommits mocks reading the members' commits: each by the author
// the map gives (carol by default), committed by dave.
func (s *ChangeSuite) batchCommits(authors map[string]string) {
	s.env.OnActivity(a.Commits, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CommitsInput) ([]activities.Commit, error) {
		var out []activities.Commit
		for _, c := range in.Commits {
			who := authors[c]
			if who == "" {
				who = "carol"
			}
			out = append(out, activities.Commit{SHA: c, Subject: "Change " + c, AuthorName: who, AuthorEmail: who + "@example.com",
				CommitterName: "Dave", CommitterEmail: "dave@example.com"})
		}
		return out, nil
	}).Once()
}

// askingBatch mocks a batch whose plan asks: the members wait behind the
// run, their commits are by authors, and the batch plans plan at the
// newest. It returns what the members are told: the batch's end, and
// that it asks.
func (s *ChangeSuite) askingBatch(authors map[string]string, plan activities.PlanResult, members ...string) (map[string]contract.Batched, map[string]contract.BatchPending) {
	told := s.waiting(members...)
	pending := signalled[contract.BatchPending](s, contract.BatchPendingSignal)
	head := members[len(members)-1]
	s.effectiveAt(head, activities.EffectiveResult{})
	s.batchCommits(authors)
	s.previewAt(head, plan)
	return told, pending
}

// previewAt mocks the batch's plan at its newest commit.
func (s *ChangeSuite) previewAt(commit string, p activities.PlanResult) {
	p.Stack = "web"
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == commit })).
		Return(p, nil).Once()
}

// asks are the approval requests the run sent.
func (s *ChangeSuite) asks() []notify.Ask {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []notify.Ask
	for _, e := range s.events {
		if e.Kind == notify.KindApproval && e.Ask != nil {
			out = append(out, *e.Ask)
		}
	}
	return out
}

// On a manual stack the granted run forms a batch of the runs queued
// behind it before any is approved, asks once for the batch (listing
// every commit in it), and on one approval deploys it in one up; each
// member hears it was deployed, and who approved.
func (s *ChangeSuite) TestManualBatchAsksOnceForEveryChange() {
	s.inspect(askingBatchStack(4, config.ApprovalManual, "bob"))
	told, pending := s.askingBatch(map[string]string{"c3": "erin"}, activities.PlanResult{Update: 3, Steps: "steps-c3"}, "c2", "c3")
	s.applyAt("web", "c3")
	s.verifyAt("web", "c3", true).Once()
	var accepted error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob", Comment: "ship the batch"}, &accepted)

	res := s.run()
	s.NoError(accepted)
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	asks := s.asks()
	s.Require().Len(asks, 1, "one approval request covers the batch")
	s.Equal([]string{"3f2a91c Change web (Alice)", "c2 Change c2 (carol)", "c3 Change c3 (erin)"}, asks[0].Batch)
	s.Equal([]string{"change/c2", "change/c3"}, keys(told))
	for _, id := range []string{"change/c2", "change/c3"} {
		s.Equal(contract.StateSucceeded, told[id].State)
		s.Require().NotNil(told[id].Decision, "%s hears who approved its batch", id)
		s.Equal("bob", told[id].Decision.User)
		s.Equal("ship the batch", told[id].Decision.Comment)
		s.Equal("change/"+strings.TrimPrefix(id, "change/"), id)
		s.Equal("default-test-workflow-id", pending[id].Leader, "%s heard its batch asks", id)
		s.Equal(3, pending[id].Changes)
	}
	st := s.status()
	s.Len(st.BatchCommits, 3)
	s.Equal(contract.Release{RunID: st.ID, Deployed: &contract.Deployed{Commit: "c3", RunID: st.ID},
		Batched: []string{"change/c2", "change/c3"}}, s.released["web"])
}

// Four eyes holds against every commit in the batch: bob wrote a member,
// so he may not approve the batch even though he did not write the
// leader's commit; mallory may.
func (s *ChangeSuite) TestFourEyesRefusesTheAuthorOfAMember() {
	st := askingBatchStack(4, config.ApprovalManual, "bob", "mallory")
	st.FourEyes = true
	s.inspect(st)
	told, _ := s.askingBatch(map[string]string{"c2": "bob"}, activities.PlanResult{Update: 3}, "c2", "c3")
	s.applyAt("web", "c3")
	s.verifyAt("web", "c3", true).Once()
	var byAuthor, byOther error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &byAuthor)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "mallory"}, &byOther)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Require().Error(byAuthor)
	s.Contains(byAuthor.Error(), `bob is linked to the author of commit c2 ("Change c2"), one of the 3 changes this decision covers, by email bob@example.com`)
	s.Contains(byAuthor.Error(), "another approver must approve the batch")
	s.NoError(byOther)
	s.Equal("mallory", told["change/c3"].Decision.User)
}

// Nobody decides: the batch's approval expires, so the leader and every
// member end expired; nothing is applied, and the members leave the queue
// with the leader.
func (s *ChangeSuite) TestBatchApprovalExpires() {
	s.inspect(askingBatchStack(4, config.ApprovalManual, "bob"))
	told, _ := s.askingBatch(nil, activities.PlanResult{Update: 3}, "c2", "c3")

	res := s.run()
	s.Equal(contract.StateExpired, res.State, res.Reason)
	s.NotContains(s.notes, "applying", "nothing is applied")
	for _, id := range []string{"change/c2", "change/c3"} {
		s.Equal(contract.StateExpired, told[id].State, id)
		s.Equal(time.Hour, told[id].Timeout)
	}
	st := s.status()
	s.Equal(contract.Release{RunID: st.ID, Batched: []string{"change/c2", "change/c3"}}, s.released["web"],
		"the members end with the batch; nothing new is good")
}

// A rejection of the batch is each member's: all end rejected, nothing
// is applied.
func (s *ChangeSuite) TestBatchRejected() {
	s.inspect(askingBatchStack(4, config.ApprovalManual, "bob"))
	told, _ := s.askingBatch(nil, activities.PlanResult{Update: 2}, "c2")
	var accepted error
	s.decide(time.Minute, DecisionRequest{Approve: false, User: "bob", Comment: "not on a Friday"}, &accepted)

	res := s.run()
	s.NoError(accepted)
	s.Equal(contract.StateRejected, res.State, res.Reason)
	s.NotContains(s.notes, "applying")
	s.Equal(contract.StateRejected, told["change/c2"].State)
	s.Require().NotNil(told["change/c2"].Decision)
	s.False(told["change/c2"].Decision.Approve)
	s.Equal("bob", told["change/c2"].Decision.User)
}

// On an on-destructive stack, a batch whose plan replaces something asks
// once for the batch, like a manual run in the middle of auto ones.
func (s *ChangeSuite) TestOnDestructiveBatchWithReplaceAsks() {
	s.inspect(askingBatchStack(4, config.ApprovalOnDestructive, "bob"))
	told, _ := s.askingBatch(nil, activities.PlanResult{Update: 1, Replace: 1}, "c2", "c3")
	s.applyAt("web", "c3")
	s.verifyAt("web", "c3", true).Once()
	var accepted error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &accepted)

	res := s.run()
	s.NoError(accepted)
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Len(s.asks(), 1)
	s.Equal("bob", told["change/c3"].Decision.User)
}

// A batch of harmless changes on an on-destructive stack goes auto:
// nobody is asked, and the members record the policy's approval.
func (s *ChangeSuite) TestOnDestructiveHarmlessBatchIsAuto() {
	s.inspect(askingBatchStack(4, config.ApprovalOnDestructive, "bob"))
	told := s.waiting("c2", "c3")
	pending := signalled[contract.BatchPending](s, contract.BatchPendingSignal)
	s.effectiveAt("c3", activities.EffectiveResult{})
	s.previewAt("c3", activities.PlanResult{Update: 3})
	s.applyAt("web", "c3")
	s.verifyAt("web", "c3", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Empty(s.asks(), "nobody is asked")
	s.Empty(pending)
	s.Require().NotNil(told["change/c3"].Decision)
	s.True(told["change/c3"].Decision.Auto)
}

// A waiting member whose batch asks says where to decide, refuses a
// decision sent to it pointing at the leader, and records the batch's
// approver as its own when the batch deployed it.
func (s *ChangeSuite) TestBatchMemberWaitsForItsBatchsApproval() {
	s.env.SetWorkflowRunTimeout(time.Hour)
	s.inspectOnly(askingBatchStack(8, config.ApprovalManual, "bob"))
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.BatchPendingSignal, contract.BatchPending{Leader: "change/c1", LeaderCommit: "c1aaaaa", Head: "c9bbbbb",
			Changes: 3, Deadline: s.env.Now().Add(time.Hour)})
	}, time.Second)
	var refused error
	var during Status
	s.env.RegisterDelayedCallback(func() { during = s.status() }, time.Minute)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	leader := contract.Batched{Leader: "change/c1", LeaderCommit: "c1aaaaaaaa", Head: "c9bbbbbbbb",
		Members:  []string{"c1aaaaaaaa", sha, "c9bbbbbbbb"},
		Decision: &contract.BatchDecision{Approve: true, User: "bob\x1b[31m", Comment: "ok", At: at, Method: "ssh"}}
	s.leaders(map[string]leaderRecord{"change/c1": {contract.StateSucceeded, &leader}})
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.BatchedSignal, leader) }, 3*time.Minute)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Require().NotNil(during.BatchPending)
	s.Contains(during.Detail, "Waiting for the approval of its batch: run change/c1 (commit c1aaaaa) asks once for all 3 changes")
	s.Require().Error(refused)
	s.Contains(refused.Error(), "change 3f2a91c is in the batch of 3 changes that run change/c1 (commit c1aaaaa) deploys")
	s.Contains(refused.Error(), "changeops approve change/c1")
	st := s.status()
	s.Nil(st.BatchPending)
	s.Require().NotNil(st.Decision)
	s.Equal(Decision{Approve: true, User: "bob[31m", Comment: "ok", At: at, Method: "ssh"}, *st.Decision, "the batch's approver, bounded")
}

// A member ends with its batch's decision: rejected by whom, or expired.
func (s *ChangeSuite) TestBatchMemberEndsWithItsBatchsDecision() {
	for _, c := range []struct {
		b            contract.Batched
		state, found string
	}{
		{contract.Batched{State: contract.StateRejected, Decision: &contract.BatchDecision{User: "bob", Comment: "not today"}},
			contract.StateRejected, `rejected in batch with c1aaaaa by bob ("not today")`},
		{contract.Batched{State: contract.StateExpired, Timeout: time.Hour},
			contract.StateExpired, "no decision within 1h0m0s on the batch with c1aaaaa (run change/c1): nothing was deployed"},
	} {
		s.newEnv()
		s.SetupTest()
		s.env.SetWorkflowRunTimeout(time.Hour)
		s.inspectOnly(askingBatchStack(8, config.ApprovalManual, "bob"))
		b := c.b
		b.Leader, b.LeaderCommit, b.Head, b.Members = "change/c1", "c1aaaaaaaa", "c9bbbbbbbb", []string{"c1aaaaaaaa", sha}
		s.leaders(map[string]leaderRecord{"change/c1": {c.state, &b}})
		s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.BatchedSignal, contract.Batched{Leader: b.Leader}) }, 0)

		res := s.run()
		s.Equal(c.state, res.State)
		s.Equal(c.found, res.Reason)
		s.Equal(contract.Release{RunID: s.status().ID}, s.released["web"], "it deployed nothing")
	}
}

// Bisection ups wait for the stack's window like any up; the restore
// does not.
func (s *ChangeSuite) TestBisectionWaitsForTheWindow() {
	told, f := s.failingBatch("c3", "c2", "c3", "c4")
	start := s.env.Now()
	opens := start.Add(2 * time.Hour)
	checks := 0
	s.script(func(now time.Time) activities.WindowResult {
		checks++
		if checks == 1 || !now.Before(opens) {
			return activities.WindowResult{Allowed: true}
		}
		return activities.WindowResult{Closed: []string{"outside the window of web"}, Next: opens}
	})

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Equal([]string{"c4", "good", "c2", "c3", "c4/c3"}, f.applied)
	s.True(f.at[1].Before(opens), "the restore does not wait")
	s.False(f.at[2].Before(opens), "the first half waits for the window: applied at %s", f.at[2])
	s.Contains(states(s.status()), contract.StateWaitingForWindow)
	s.Equal(contract.StateRolledBack, told["change/c3"].State)
}

// A run cancelled while bisection waits for the window ends there: the
// commits not judged are told nothing and stay queued.
func (s *ChangeSuite) TestBisectionWindowWaitEndedLeavesMembersQueued() {
	told, f := s.failingBatch("c3", "c2", "c3", "c4")
	checks := 0
	s.script(func(time.Time) activities.WindowResult {
		checks++
		if checks == 1 {
			return activities.WindowResult{Allowed: true}
		}
		return activities.WindowResult{Frozen: []activities.Freeze{{Stack: "web", By: "bob", Reason: "incident"}}}
	})
	s.env.RegisterDelayedCallback(func() { s.env.CancelWorkflow() }, 3*time.Hour)

	s.env.ExecuteWorkflow(contract.ChangeWorkflowName, ChangeInput{Branch: "main", Commit: sha})
	s.True(s.env.IsWorkflowCompleted())
	s.Equal([]string{"c4", "good"}, f.applied, "the batch and the restore; no half while frozen")
	s.Empty(told, "no member was judged")
	st := s.status()
	s.Equal(contract.StateFailed, st.State)
	s.Equal(contract.Release{RunID: st.ID}, s.released["web"], "the members stay queued; nothing new is good")
}

// An engine failure during bisection is not blamed on the tree: the good
// prefix found so far is deployed and the stack put back to it, nothing
// is reverted, and the commits not judged stay queued.
func (s *ChangeSuite) TestEngineFailureStopsBisection() {
	told, f := s.failingBatch("c5", "c2", "c3", "c4", "c5")
	f.engineFails = "c3"

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State, res.Reason)
	s.Contains(res.Reason, "bisection deployed and verified this change, then stopped: apply web at c3: apply stack web (prod) at c3: 503 Service Unavailable")
	s.Contains(res.Reason, "c3, c4, c5 stay queued and each deploys on its own run")
	s.Equal([]string{"c5", "good", "c2", "c3", "c2"}, f.applied, "the batch, the restore, c2 passes, c3's up fails, back to c2")
	s.False(f.reverted, "nothing is reverted")
	s.Equal([]string{"change/c2"}, keys(told))
	s.Equal(contract.StateSucceeded, told["change/c2"].State)
	s.Contains(s.notes, "bisection stopped")
	st := s.status()
	s.Equal(contract.Release{RunID: st.ID, Deployed: &contract.Deployed{Commit: "c2", RunID: st.ID},
		Batched: []string{"change/c2"}}, s.released["web"], "c2 is the good state; c3, c4, c5 stay queued")
}

// The batch's own up fails for a reason that is not its tree's (the
// cloud's 503 outlasted its retries): the stack is restored and nothing
// is bisected or reverted; the members stay queued to deploy one by one.
func (s *ChangeSuite) TestEngineFailureOfTheBatchIsNotBisected() {
	told, f := s.failingBatch("none", "c2", "c3")
	f.engineFails = "c3"

	res := s.run()
	s.Equal(contract.StateFailed, res.State, res.Reason)
	s.Contains(res.Reason, "not the tree's fault, so the batch was not bisected")
	s.Contains(res.Reason, "c2, c3 stay queued")
	s.Equal([]string{"c3", "good"}, f.applied, "the batch, then the restore: no trial")
	s.False(f.reverted)
	s.Empty(told)
	st := s.status()
	s.Equal(contract.Release{RunID: st.ID}, s.released["web"], "nobody leaves the queue with the leader")
}
