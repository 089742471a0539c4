package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// ChangeSuite drives ChangeWorkflow through every branch of the run with
// mocked activities.
type ChangeSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	// notes collects every notification step, in order.
	mu     sync.Mutex
	notes  []string
	events []notify.Event
	// lastGood is what the queues' grants carry; released collects the
	// releases the run sent, by stack.
	lastGood *contract.Deployed
	released map[string]contract.Release
	// asked collects the run's requests to its watcher for queue places.
	asked []contract.EnqueueRequest
	// windows scripts the Window activity's answers (window_test.go).
	windows windowScript
}

func TestChangeSuite(t *testing.T) { suite.Run(t, new(ChangeSuite)) }

const sha = "3f2a91c0aa0000000000000000000000000000aa"

func (s *ChangeSuite) SetupTest() {
	s.newEnv()
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(s.threadingNotifier).Maybe()
}

// threadingNotifier records each event and answers like a chat that keeps
// a thread per run: the first event's message becomes the parent, and an
// approval request's message holds the buttons until the run moves on.
func (s *ChangeSuite) threadingNotifier(_ context.Context, e notify.Event) (notify.Thread, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, e.Step)
	s.events = append(s.events, e)
	th := e.Thread
	if th.ParentTS == "" {
		th.ParentTS = fmt.Sprintf("parent-%d", len(s.events))
	}
	th.State = e.State
	switch {
	case e.Kind == notify.KindApproval:
		th.ApprovalTS = fmt.Sprintf("approval-%d", len(s.events))
	case e.Kind == notify.KindDecision:
		th.ApprovalTS = ""
	}
	return th, nil
}

// newEnv makes a fresh environment whose stack queues answer: the watcher
// takes enqueue requests, inspect grants every stack the commit touches,
// releases are recorded.
func (s *ChangeSuite) newEnv() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	Workflows{Gate: testGate}.Register(s.env)
	// A mock of the previous environment may still be running: reset
	// under its lock.
	s.mu.Lock()
	s.notes, s.events, s.asked, s.lastGood = nil, nil, nil, nil
	s.released = map[string]contract.Release{}
	s.windows = windowScript{}
	s.mu.Unlock()
	s.env.OnActivity(a.Window, mock.Anything, mock.Anything).Return(s.window).Maybe()
	s.env.OnSignalExternalWorkflow(mock.Anything, contract.WatcherID("", "main"), "", contract.EnqueueRunSignal, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.asked = append(s.asked, arg.(contract.EnqueueRequest))
			return nil
		}).Maybe()
	s.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.ReleaseSignal, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.released[strings.TrimPrefix(id, "queue/")] = arg.(contract.Release)
			return nil
		}).Maybe()
}

// grant has each stack's queue grant it after d.
func (s *ChangeSuite) grant(d time.Duration, stacks ...string) {
	s.env.RegisterDelayedCallback(func() {
		for _, name := range stacks {
			s.env.SignalWorkflow(contract.GrantSignal, contract.Grant{Stack: name, LastGood: s.lastGood})
		}
	}, d)
}

// effective mocks the effective tree the run finds once granted.
func (s *ChangeSuite) effective(res activities.EffectiveResult) {
	s.env.OnActivity(a.Effective, mock.Anything, activities.EffectiveInput{Branch: "main", Commit: sha}).Return(res, nil).Once()
}

func (s *ChangeSuite) AfterTest(_, _ string) { s.env.AssertExpectations(s.T()) }

func stack(name, policy string, approvers ...string) config.Stack {
	return config.Stack{
		Name: name, Path: "stacks/" + name, Stack: "prod", Approval: policy, Approvers: approvers,
		ApprovalTimeout: config.Duration(time.Hour),
		VerifyTimeout:   config.Duration(time.Minute),
		Verify:          []config.Check{{NoChanges: true}},
	}
}

// inspect mocks the commit touching stacks; their queues grant them at
// once and the effective tree is the commit's own.
func (s *ChangeSuite) inspect(stacks ...config.Stack) {
	s.inspectOnly(stacks...)
	var names []string
	for _, st := range stacks {
		names = append(names, st.Name)
	}
	if len(names) > 0 {
		s.grant(0, names...)
		s.effective(activities.EffectiveResult{})
	}
}

func (s *ChangeSuite) inspectOnly(stacks ...config.Stack) {
	s.env.OnActivity(a.Inspect, mock.Anything, activities.InspectInput{Branch: "main", Commit: sha}).Return(activities.InspectResult{
		Commit: activities.Commit{SHA: sha, Subject: "Change web", AuthorName: "Alice", AuthorEmail: "alice@example.com",
			CommitterName: "Dave", CommitterEmail: "dave@example.com"},
		ChangedPaths: []string{"stacks/web/index.html"},
		Stacks:       stacks,
	}, nil).Once()
}

func (s *ChangeSuite) plan(name string, p activities.PlanResult) {
	p.Stack = name
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Stack.Name == name })).
		Return(p, nil).Once()
}

func (s *ChangeSuite) apply(name string) { s.applyAt(name, sha) }

func (s *ChangeSuite) applyAt(name, commit string) {
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Stack.Name == name && in.Commit == commit })).
		Return(activities.ApplyResult{Stack: name, Update: 1, UpdateVersion: 2}, nil).Once()
}

func (s *ChangeSuite) verify(name string, passed bool) *testsuite.MockCallWrapper {
	return s.verifyAt(name, sha, passed)
}

func (s *ChangeSuite) verifyAt(name, commit string, passed bool) *testsuite.MockCallWrapper {
	return s.env.OnActivity(a.Verify, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool { return in.Stack.Name == name && in.Commit == commit })).
		Return(activities.VerifyResult{Stack: name, Passed: passed, Results: []activities.CheckResult{{Check: "no_changes", Passed: passed, Detail: "detail"}}}, nil)
}

func (s *ChangeSuite) run() ChangeResult {
	s.env.ExecuteWorkflow(contract.ChangeWorkflowName, ChangeInput{Branch: "main", Commit: sha})
	s.True(s.env.IsWorkflowCompleted())
	s.NoError(s.env.GetWorkflowError())
	var res ChangeResult
	s.NoError(s.env.GetWorkflowResult(&res))
	return res
}

func (s *ChangeSuite) status() Status {
	v, err := s.env.QueryWorkflow(contract.StatusQuery)
	s.Require().NoError(err)
	var st Status
	s.Require().NoError(v.Get(&st))
	return st
}

// decide sends a decision through the Update after d and records how it
// was answered.
func (s *ChangeSuite) decide(d time.Duration, req DecisionRequest, refused *error) {
	s.decideSigned(d, func(st Status, now time.Time) DecisionRequest { return sign(st, req, now) }, refused)
}

// decideSigned sends the request made after d by build, from the run's
// status and the test clock.
func (s *ChangeSuite) decideSigned(d time.Duration, build func(Status, time.Time) DecisionRequest, refused *error) {
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(contract.DecisionUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { *refused = err },
			OnComplete: func(any, error) {},
		}, build(s.status(), s.env.Now()))
	}, d)
}

func (s *ChangeSuite) TestApprovedAppliesAndSucceeds() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob", Comment: "lgtm"}, &refused)

	res := s.run()
	s.NoError(refused)
	s.Equal(contract.StateSucceeded, res.State)
	st := s.status()
	s.Equal("bob", st.Decision.User)
	s.Equal([]string{"web"}, st.Stacks)
	s.Len(st.Applies, 1)
	s.Equal([]string{contract.StatePlanning, contract.StateQueued, contract.StatePlanning, contract.StateAwaitingApproval, contract.StateApplying, contract.StateVerifying, contract.StateSucceeded}, states(st))
	s.Equal([]string{"web"}, st.Held)
	s.Equal(contract.Release{RunID: st.ID, Deployed: &contract.Deployed{Commit: sha, RunID: st.ID}}, s.released["web"],
		"the queue learns the stack's new last good state")
	s.Equal([]contract.EnqueueRequest{{Entries: []contract.QueueRequest{{Stack: "web", RunID: st.ID, Commit: sha, Alone: true}}}}, s.asked,
		"a run the watcher did not start asks it for its place")
	s.Equal([]string{"received", "plan ready", "awaiting approval", "approved by bob", "applying", "applied", "verified web", "succeeded"}, s.notes,
		"every step is announced, in order")
}

func (s *ChangeSuite) TestRejectedNeverApplies() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: false, User: "bob", Comment: "not now"}, &refused)

	res := s.run()
	s.Equal(contract.StateRejected, res.State)
	s.Contains(res.Reason, "bob")
	s.Contains(res.Reason, "not now")
}

// A signal has no validator to authenticate it, so no signal decides:
// each is recorded as refused and the run keeps waiting.
func (s *ChangeSuite) TestSignalDecisionRefused() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.DecisionSignal, DecisionRequest{Approve: true, User: "bob"})
	}, time.Minute)
	s.env.RegisterDelayedCallback(func() {
		st := s.status()
		s.env.SignalWorkflow(contract.DecisionSignal, sign(st, DecisionRequest{Approve: true, User: "bob"}, s.env.Now()))
	}, 2*time.Minute)

	res := s.run()
	s.Equal(contract.StateExpired, res.State)
	st := s.status()
	s.Nil(st.Decision)
	s.Require().Len(st.Refusals, 2)
	s.Contains(st.Refusals[0], "decisions by signal are refused")
	s.Contains(st.Refusals[1], "decisions by signal are refused")
}

func (s *ChangeSuite) TestExpiresWithoutDecision() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})

	res := s.run()
	s.Equal(contract.StateExpired, res.State)
	s.Contains(res.Reason, "1h0m0s")
}

func (s *ChangeSuite) TestRefusedApproverThenAllowedOne() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var refused, accepted error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "mallory"}, &refused)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &accepted)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Require().Error(refused)
	s.Contains(refused.Error(), "mallory may not decide change 3f2a91c: approvers for web are bob")
	s.NoError(accepted)
}

func (s *ChangeSuite) TestFourEyesRefusesAuthor() {
	st := stack("web", config.ApprovalManual, "alice", "bob")
	st.FourEyes = true
	s.inspect(st)
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var byAuthor, byOther error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "alice"}, &byAuthor)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &byOther)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Require().Error(byAuthor)
	s.Contains(byAuthor.Error(), "alice is linked to the author of commit 3f2a91c by email alice@example.com")
	s.NoError(byOther)
}

func (s *ChangeSuite) TestAutoApproval() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Delete: 3})
	s.apply("web")
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	st := s.status()
	s.True(st.Decision.Auto)
	s.NotContains(states(st), contract.StateAwaitingApproval)
}

func (s *ChangeSuite) TestOnDestructiveWithoutDestructivePlanIsAuto() {
	s.inspect(stack("web", config.ApprovalOnDestructive, "bob"))
	s.plan("web", activities.PlanResult{Create: 1, Update: 2})
	s.apply("web")
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.NotContains(states(s.status()), contract.StateAwaitingApproval)
}

func (s *ChangeSuite) TestOnDestructiveWithReplaceWaits() {
	s.inspect(stack("web", config.ApprovalOnDestructive, "bob"))
	s.plan("web", activities.PlanResult{Replace: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	st := s.status()
	s.Contains(states(st), contract.StateAwaitingApproval)
	s.Equal([]string{"web"}, st.Approval.Stacks)
}

const good = "1111111111111111111111111111111111111111"

// rollback mocks a revert and a restore of web to its last good commit.
func (s *ChangeSuite) rollback(rev activities.RevertResult, restoreVerifies bool) {
	s.env.OnActivity(a.Revert, mock.Anything, activities.RevertInput{Branch: "main", Commit: sha, Subject: "Change web", RunID: "default-test-workflow-id"}).
		Return(rev, nil).Once()
	s.env.OnActivity(a.LastGood, mock.Anything, activities.LastGoodInput{Stack: "web"}).
		Return(activities.LastGoodResult{Commit: good, RunID: "change/main/" + good, Found: true}, nil).Once()
	s.applyAt("web", good)
	s.verifyAt("web", good, restoreVerifies).Maybe()
}

func (s *ChangeSuite) TestApplyErrorRollsBack() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == sha })).Return(activities.ApplyResult{},
		temporal.NewNonRetryableApplicationError("apply stack web (prod) at 3f2a91c: error: boom", activities.ErrPulumiProgram, nil)).Once()
	s.rollback(activities.RevertResult{Revert: "feedface"}, true)

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State)
	st := s.status()
	s.Equal("apply web: apply stack web (prod) at 3f2a91c: error: boom", st.Error)
	s.Equal("feedface", st.RevertCommit)
	s.Equal([]Restore{{Stack: "web", Commit: good, OK: true, Detail: "restored to 1111111 and verified"}}, st.Restored)
	s.Equal("feedface", res.RevertCommit, "the result records the revert commit")
	s.Equal(st.Restored, res.Restored, "and what was restored")
	s.Equal([]string{contract.StatePlanning, contract.StateQueued, contract.StatePlanning, contract.StateApplying, contract.StateRollingBack, contract.StateRolledBack}, states(st))
	s.Nil(s.released["web"].Deployed, "a rolled-back run leaves the last good state as it was")
}

func (s *ChangeSuite) TestRevertConflictStillRestores() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", false)
	s.rollback(activities.RevertResult{Conflicts: []string{"stacks/web/index.html"}}, true)

	res := s.run()
	s.Equal(contract.StateRollbackFailed, res.State)
	s.Contains(res.Reason, "the revert of 3f2a91c conflicts in stacks/web/index.html: revert it by hand")
	st := s.status()
	s.Empty(st.RevertCommit)
	s.True(st.Restored[0].OK, "the infrastructure is restored even when git needs a person")
}

func (s *ChangeSuite) TestRestoreThatFailsVerificationIsReported() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", false)
	s.rollback(activities.RevertResult{Revert: "feedface"}, false)

	res := s.run()
	s.Equal(contract.StateRollbackFailed, res.State)
	s.Contains(res.Reason, "restore web: verification of web failed after")
	s.False(s.status().Restored[0].OK)
}

// A plan with nothing to do (a revert commit after its rollback restored
// the stack) ends no-op without asking anyone.
func (s *ChangeSuite) TestEmptyPlanIsNoOpWithoutApproval() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Same: 3})

	res := s.run()
	s.Equal(contract.StateNoOp, res.State)
	s.NotContains(states(s.status()), contract.StateAwaitingApproval)
}

func (s *ChangeSuite) TestNothingToRestoreTo() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", false)
	s.env.OnActivity(a.Revert, mock.Anything, mock.Anything).Return(activities.RevertResult{Revert: "feedface"}, nil).Once()
	s.env.OnActivity(a.LastGood, mock.Anything, mock.Anything).Return(activities.LastGoodResult{}, nil).Once()

	res := s.run()
	s.Equal(contract.StateRollbackFailed, res.State)
	s.Contains(res.Reason, "restore web: no earlier successful change: nothing to restore to")
	s.Equal("feedface", s.status().RevertCommit)
}

func (s *ChangeSuite) TestPreviewErrorFailsWithoutApproval() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.env.OnActivity(a.Preview, mock.Anything, mock.Anything).Return(activities.PlanResult{},
		temporal.NewNonRetryableApplicationError("preview stack web (prod) at 3f2a91c: error: unknown resource type", activities.ErrPulumiProgram, nil)).Once()

	res := s.run()
	s.Equal(contract.StateFailed, res.State)
	s.Contains(res.Reason, "unknown resource type")
	s.NotContains(states(s.status()), contract.StateAwaitingApproval)
}

func (s *ChangeSuite) TestVerifyRetriesOnTimersThenRollsBack() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", false) // every round fails
	s.rollback(activities.RevertResult{Revert: "feedface"}, true)

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State)
	// verify_timeout 1m: a round every 6s on a durable timer, the tenth
	// round is the last that fits.
	s.Contains(res.Reason, "verification of web failed after 10 rounds within 1m0s: no_changes: detail")
}

func (s *ChangeSuite) TestVerifyPassesOnLaterRound() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", false).Twice()
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
}

func (s *ChangeSuite) TestNoStacksIsNoOp() {
	s.inspect()

	res := s.run()
	s.Equal(contract.StateNoOp, res.State)
	s.Equal([]string{contract.StatePlanning, contract.StateNoOp}, states(s.status()))
}

func (s *ChangeSuite) TestMissingCommitFails() {
	s.env.OnActivity(a.Inspect, mock.Anything, mock.Anything).Return(activities.InspectResult{},
		temporal.NewNonRetryableApplicationError("commit 3f2a91c not found on /repo: check the SHA and that it was pushed", activities.ErrCommitNotFound, nil)).Once()

	res := s.run()
	s.Equal(contract.StateFailed, res.State)
	s.Contains(res.Reason, "not found")
}

func (s *ChangeSuite) TestNotificationFailureNeverFailsTheRun() {
	s.newEnv()
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(notify.Thread{}, errors.New("slack is down"))
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
}

// A Slack that takes ten minutes per message delays no step of the change:
// notifications go out in order, off the run's path, and all of them before
// the run completes.
func (s *ChangeSuite) TestSlowNotificationsDelayNothing() {
	s.newEnv()
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).After(10 * time.Minute).Return(s.threadingNotifier)
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	st := s.status()
	first, last := st.Steps[0].At, st.Steps[len(st.Steps)-1].At
	s.Less(last.Sub(first), time.Minute, "the change waited for notifications")
	s.Equal([]string{"received", "plan ready", "approved by policy", "applying", "applied", "verified web", "succeeded"}, s.notes)
}

func (s *ChangeSuite) TestNoCommonApproverFails() {
	s.inspect(stack("api", config.ApprovalManual, "carol"), stack("web", config.ApprovalManual, "bob"))
	s.plan("api", activities.PlanResult{Update: 1})
	s.plan("web", activities.PlanResult{Update: 1})

	res := s.run()
	s.Equal(contract.StateFailed, res.State)
	s.Contains(res.Reason, "no approver is allowed on all of api, web")
}

func states(st Status) []string {
	var out []string
	for _, s := range st.Steps {
		out = append(out, s.State)
	}
	return out
}

// A run waits, queued, until its stack is granted, and plans only then.
func (s *ChangeSuite) TestQueuedUntilGranted() {
	s.inspectOnly(stack("web", config.ApprovalAuto))
	s.grant(time.Hour, "web")
	s.effective(activities.EffectiveResult{})
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var during Status
	s.env.RegisterDelayedCallback(func() { during = s.status() }, 30*time.Minute)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal(contract.StateQueued, during.State, "no plan before the grant")
	s.Empty(during.Plans)
	st := s.status()
	s.GreaterOrEqual(st.Steps[2].At.Sub(st.Steps[1].At), time.Hour, "planning starts when the grant arrives")
}

// The watcher already put its runs into their queues: they do not ask again.
func (s *ChangeSuite) TestWatcherStartedRunDoesNotEnqueueAgain() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	s.env.ExecuteWorkflow(contract.ChangeWorkflowName, ChangeInput{Branch: "main", Commit: sha, Enqueued: []string{"web"}})
	s.NoError(s.env.GetWorkflowError())
	s.Empty(s.asked)
	s.NotNil(s.released["web"].Deployed)
}

// With no watcher for the branch, the run enters the queues itself.
func (s *ChangeSuite) TestWithoutWatcherEntersQueuesItself() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	Workflows{Gate: testGate}.Register(s.env)
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(notify.Thread{}, nil).Maybe()
	s.env.OnActivity(a.Window, mock.Anything, mock.Anything).Return(activities.WindowResult{Allowed: true}, nil).Maybe()
	s.env.OnSignalExternalWorkflow(mock.Anything, contract.WatcherID("", "main"), "", contract.EnqueueRunSignal, mock.Anything).
		Return(errors.New("unknown external workflow execution")).Once()
	s.env.OnSignalExternalWorkflow(mock.Anything, "queue/web", "", contract.ReleaseSignal, mock.Anything).Return(nil).Once()
	s.env.OnActivity(a.Enqueue, mock.Anything, contract.EnqueueRequest{Entries: []contract.QueueRequest{
		{Stack: "web", RunID: "default-test-workflow-id", Commit: sha, Alone: true},
	}}).Return(nil).Once()
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	s.Equal(contract.StateSucceeded, s.run().State)
}

// Reverts landed while the run queued: it deploys its effective tree, and
// every step (plan, apply, verify) sees the same subtraction.
func (s *ChangeSuite) TestDeploysTheEffectiveTree() {
	const reverted = "aaaa000000000000000000000000000000000000"
	// on-destructive: the policy approved this plan (no replace, no
	// delete), so the apply is held to it.
	s.inspectOnly(stack("web", config.ApprovalOnDestructive, "bob"))
	s.grant(0, "web")
	s.effective(activities.EffectiveResult{Undone: []string{reverted}})
	undone := func(u []string) bool { return len(u) == 1 && u[0] == reverted }
	s.env.OnActivity(a.Preview, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return undone(in.Undone) })).
		Return(activities.PlanResult{Stack: "web", Update: 1, Steps: "approved-steps"}, nil).Once()
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool {
		return undone(in.Undone) && in.Approved == "approved-steps"
	})).Return(activities.ApplyResult{Stack: "web", Update: 1}, nil).Once()
	s.env.OnActivity(a.Verify, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool { return undone(in.Undone) })).
		Return(activities.VerifyResult{Stack: "web", Passed: true}, nil).Once()

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal([]string{reverted}, s.status().Undone)
	s.Contains(s.notes, "effective tree")
	s.Equal([]string{reverted}, s.released["web"].Deployed.Undone, "the last good state is the effective tree")
}

// Subtracting a reverted change conflicts: the run fails naming it and
// deploys nothing.
func (s *ChangeSuite) TestDependsOnRevertedChangeFails() {
	const reverted = "aaaa000000000000000000000000000000000000"
	s.inspectOnly(stack("web", config.ApprovalAuto))
	s.grant(0, "web")
	s.effective(activities.EffectiveResult{Undone: []string{reverted}, DependsOn: reverted, Conflicts: []string{"stacks/web/index.html"}})

	res := s.run()
	s.Equal(contract.StateFailed, res.State)
	s.Contains(res.Reason, "3f2a91c builds on aaaa000, which was reverted: undoing aaaa000 conflicts in stacks/web/index.html")
	s.Empty(s.status().Plans)
	s.Nil(s.released["web"].Deployed)
}

// The stack would change differently at apply time than the approved plan
// said: the run plans again and asks again.
func (s *ChangeSuite) TestChangedPlanIsApprovedAgain() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1, Steps: "first"})
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Approved == "first" })).
		Return(activities.ApplyResult{}, temporal.NewNonRetryableApplicationError(
			"stack web at 3f2a91c would now change differently from the approved plan (0 to create, 1 to update, 1 to replace, 0 to delete): it must be approved again",
			activities.ErrPlanChanged, nil)).Once()
	s.plan("web", activities.PlanResult{Update: 1, Replace: 1, Steps: "second"})
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Approved == "second" })).
		Return(activities.ApplyResult{Stack: "web", Update: 1, Replace: 1}, nil).Once()
	s.verify("web", true).Once()
	var first, second error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &first)
	s.decide(time.Hour, DecisionRequest{Approve: true, User: "bob", Comment: "the replace is fine"}, &second)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.NoError(first)
	s.NoError(second)
	st := s.status()
	s.Equal("the replace is fine", st.Decision.Comment, "the decision that counts is the one on the new plan")
	s.Equal("second", st.Plans[0].Steps)
	s.Contains(s.notes, "plan changed")
	s.Equal(2, strings.Count(strings.Join(states(st), ","), contract.StateAwaitingApproval))
}

// The queue's grant says what the stack last held that was good: a
// rollback restores that effective tree, without asking visibility.
func (s *ChangeSuite) TestRollbackRestoresTheGrantsLastGood() {
	const undone = "bbbb000000000000000000000000000000000000"
	s.lastGood = &contract.Deployed{Commit: good, Undone: []string{undone}, RunID: "change/main/" + good}
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", false)
	s.env.OnActivity(a.Revert, mock.Anything, mock.Anything).Return(activities.RevertResult{Revert: "feedface"}, nil).Once()
	// A restore applies the known good state as it is, with no approval.
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool {
		return in.Commit == good && len(in.Undone) == 1 && in.Undone[0] == undone && in.Approved == ""
	})).Return(activities.ApplyResult{Stack: "web"}, nil).Once()
	s.verifyAt("web", good, true).Once()

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State)
	s.Equal([]Restore{{Stack: "web", Commit: good, Undone: []string{undone}, OK: true, Detail: "restored to 1111111 and verified"}}, s.status().Restored)
}

// A grant for a stack the commit does not touch (the watcher enqueued the
// run under an older configuration) is given straight back.
func (s *ChangeSuite) TestUnwantedGrantIsReturned() {
	s.grant(0, "api")
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	s.env.ExecuteWorkflow(contract.ChangeWorkflowName, ChangeInput{Branch: "main", Commit: sha, Enqueued: []string{"api", "web"}})
	s.NoError(s.env.GetWorkflowError())
	s.Empty(s.asked)
	s.Contains(s.released, "api")
	s.Nil(s.released["api"].Deployed)
	s.Equal([]string{"web"}, s.status().Held)
}

// Under `auto` any plan is approved: apply is not held to the first one.
func (s *ChangeSuite) TestAutoApplyIsNotHeldToThePlan() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1, Steps: "steps"})
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Approved == "" })).
		Return(activities.ApplyResult{Stack: "web", Update: 1}, nil).Once()
	s.verify("web", true).Once()

	s.Equal(contract.StateSucceeded, s.run().State)
}

// Each delivery gets the thread the one before returned: the parent made
// by the first message, the approval buttons until the decision. The
// events carry what a chat renders: the plan, who may decide, the
// decision, the checks.
func (s *ChangeSuite) TestNotificationsThreadThroughTheRun() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1, Diff: strings.Repeat("~ page\n", 1000)})
	s.apply("web")
	s.verify("web", true).Once()
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob", Comment: "lgtm"}, &refused)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.Require().Len(s.events, 8)
	s.Equal(notify.Thread{}, s.events[0].Thread, "the first event starts the thread")
	var kinds []notify.Kind
	for i, e := range s.events {
		kinds = append(kinds, e.Kind)
		if i > 0 {
			s.Equal("parent-1", e.Thread.ParentTS, "event %d (%s) goes into the run's thread", i, e.Step)
			s.Equal(s.events[i-1].State, e.Thread.State, "event %d knows what the parent shows", i)
		}
	}
	s.Equal([]notify.Kind{notify.KindReceived, notify.KindPlanned, notify.KindApproval, notify.KindDecision,
		notify.KindApplying, notify.KindApplied, notify.KindVerified, notify.KindFinished}, kinds)

	planned, ask, decision := s.events[1], s.events[2], s.events[3]
	s.Require().Len(planned.Plans, 1)
	s.Equal(1, planned.Plans[0].Update)
	s.Len([]rune(planned.Plans[0].Diff), notify.MaxDiff, "a notification carries only what a chat can show")
	s.True(planned.Plans[0].DiffTruncated)
	s.Require().NotNil(ask.Ask)
	s.Equal([]string{"bob"}, ask.Ask.Approvers)
	s.Equal("approval-3", decision.Thread.ApprovalTS, "the decision can close the message with the buttons")
	s.Require().NotNil(decision.Decision)
	s.Equal("bob", decision.Decision.User)
	s.Equal("lgtm", decision.Decision.Comment)
	s.Empty(s.events[4].Thread.ApprovalTS)
	s.Require().Len(s.events[6].Checks, 1)
	s.Equal("web", s.events[6].Checks[0].Stack)
}

// A failed delivery keeps the thread as it was, so the next message still
// finds the run's parent.
func (s *ChangeSuite) TestFailedNotificationKeepsTheThread() {
	s.newEnv()
	calls := 0
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(ctx context.Context, e notify.Event) (notify.Thread, error) {
		s.mu.Lock()
		calls++
		fail := e.Kind == notify.KindPlanned
		s.mu.Unlock()
		if fail {
			return notify.Thread{}, temporal.NewNonRetryableApplicationError("slack is down", "test", nil)
		}
		return s.threadingNotifier(ctx, e)
	})
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	s.Equal(contract.StateSucceeded, s.run().State)
	s.Greater(calls, len(s.events), "the plan notification failed")
	for _, e := range s.events[1:] {
		s.Equal("parent-1", e.Thread.ParentTS, "%s still goes into the thread", e.Step)
	}
}

// A Slack user not listed by ID may decide through a listed user group the
// Slack app found them in; a group that is not listed, or a name that is
// not a group ID, does not let anyone in.
func (s *ChangeSuite) TestApprovalThroughAUserGroup() {
	s.inspect(stack("web", config.ApprovalManual, "U0BOB", "S0PLATFORM"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var notListed, notGroup, ok error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "U0CAROL", Via: "S0OTHER"}, &notListed)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "U0CAROL", Via: "bob"}, &notGroup)
	s.decide(3*time.Minute, DecisionRequest{Approve: true, User: "U0CAROL", Via: "S0PLATFORM"}, &ok)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.ErrorContains(notListed, "U0CAROL may not decide")
	s.ErrorContains(notGroup, "U0CAROL may not decide")
	s.NoError(ok)
	st := s.status()
	s.Equal("U0CAROL", st.Decision.User)
	s.Equal("S0PLATFORM", st.Decision.Via)
}

// Under four eyes a Slack user is matched to the commit's author by email,
// since a Slack user ID is not a git identity.
func (s *ChangeSuite) TestFourEyesMatchesSlackEmail() {
	web := stack("web", config.ApprovalManual, "U0ALICE", "U0BOB")
	web.FourEyes = true
	s.inspect(web)
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var author, other error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "U0ALICE", Email: "Alice@Example.com"}, &author)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "U0BOB", Email: "bob@example.com"}, &other)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.ErrorContains(author, "U0ALICE is linked to the author of commit 3f2a91c by email alice@example.com")
	s.NoError(other)
}

// Each engine step is told where the run's messages go, so a failure it
// retries can be announced in the run's thread; the approval request
// names the run and the plan its buttons decide.
func (s *ChangeSuite) TestStepsKnowTheRunsThread() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1, Steps: "steps-1", Digest: "digest-1"})
	var applied activities.StackInput
	s.env.OnActivity(a.Apply, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StackInput) (activities.ApplyResult, error) {
		applied = in
		return activities.ApplyResult{Stack: in.Stack.Name}, nil
	})
	s.verify("web", true).Once()
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, new(error))

	s.Equal(contract.StateSucceeded, s.run().State)
	st := s.status()
	s.Require().NotNil(applied.Notice, "apply was not told where to announce retries")
	s.Equal(notify.Event{RunID: st.ID, Branch: "main", Commit: sha, Subject: st.Commit.Subject, Author: st.Commit.AuthorName,
		Stacks: []string{"web"}, State: contract.StateApplying, Thread: applied.Notice.Thread}, *applied.Notice)
	s.NotEmpty(applied.Notice.Thread.ParentTS, "the notice must name the run's Slack thread")
	var ask *notify.Ask
	for _, e := range s.events {
		if e.Kind == notify.KindApproval {
			ask = e.Ask
		}
	}
	s.Require().NotNil(ask)
	s.Equal(st.RunID, ask.Execution)
	s.Equal(st.PlanDigest(), ask.Plan)
	s.NotEmpty(ask.Plan)
}
