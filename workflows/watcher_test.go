package workflows

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// WatcherSuite drives WatcherWorkflow with a scripted sequence of polls.
type WatcherSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment

	mu      sync.Mutex
	polls   []activities.PollResult // answered in order, then "nothing new"
	errs    map[int]error           // poll number → failure
	n       int
	lastIn  []string // LastSeen of each poll
	started []string // commits whose change run was started
	inputs  map[string]ChangeInput
	queued  []contract.QueueRequest // what Enqueue was asked, in order
	notes   []string
	// onEnqueue, when set, runs as Enqueue is called (outside mu).
	onEnqueue func(contract.EnqueueRequest)
}

func TestWatcherSuite(t *testing.T) { suite.Run(t, new(WatcherSuite)) }

func (s *WatcherSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	Workflows{Gate: testGate}.Register(s.env)
	// A mock of the previous test's environment may still be running:
	// reset under its lock.
	s.mu.Lock()
	s.polls, s.errs, s.n, s.lastIn, s.started, s.notes = nil, map[int]error{}, 0, nil, nil, nil
	s.inputs, s.queued, s.onEnqueue = map[string]ChangeInput{}, nil, nil
	s.mu.Unlock()
	s.env.OnActivity(a.Enqueue, mock.Anything, mock.Anything).Return(func(_ context.Context, req contract.EnqueueRequest) error {
		s.mu.Lock()
		s.queued = append(s.queued, req.Entries...)
		hook := s.onEnqueue
		s.mu.Unlock()
		if hook != nil {
			hook(req)
		}
		return nil
	}).Maybe()
	s.env.OnActivity(a.PollBranch, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PollInput) (activities.PollResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.n++
		s.lastIn = append(s.lastIn, in.LastSeen)
		if err, ok := s.errs[s.n]; ok {
			return activities.PollResult{}, err
		}
		if len(s.polls) == 0 {
			return activities.PollResult{Head: in.LastSeen, PollInterval: time.Second}, nil
		}
		res := s.polls[0]
		s.polls = s.polls[1:]
		res.PollInterval = time.Second
		return res, nil
	})
	s.env.OnWorkflow(contract.ChangeWorkflowName, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in ChangeInput) (ChangeResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.started = append(s.started, in.Commit)
		s.inputs[in.Commit] = in
		return ChangeResult{State: contract.StateSucceeded}, nil
	})
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, e notify.Event) (notify.Thread, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.notes = append(s.notes, e.Step)
		return notify.Thread{}, nil
	}).Maybe()
}

// run runs the watcher until it continues as new (after pollsPerRun polls)
// or the test's callback stops it.
func (s *WatcherSuite) run(in WatcherInput) {
	s.env.ExecuteWorkflow(WatcherWorkflow, in)
	s.True(s.env.IsWorkflowCompleted())
}

func (s *WatcherSuite) TestBaselineThenNewCommitsInOrder() {
	s.polls = []activities.PollResult{
		{Head: "base"},
		{Head: "c3", NewCommits: []string{"c1", "c2", "c3"}},
	}
	s.run(WatcherInput{Branch: "main"})
	s.Equal([]string{"c1", "c2", "c3"}, s.started, "the baseline itself is not deployed; new commits are, oldest first")
	s.Equal([]string{"", "base", "c3"}, s.lastIn[:3])
}

func (s *WatcherSuite) TestInitialDeployRunsTheHeadOnce() {
	s.polls = []activities.PollResult{{Head: "base", Initial: config.InitialDeploy}}
	s.run(WatcherInput{Branch: "main"})
	s.Equal([]string{"base"}, s.started)
}

func (s *WatcherSuite) TestRewriteIsHeldUntilAcknowledged() {
	s.polls = []activities.PollResult{
		{Head: "x2", Rewritten: true},
		{Head: "x3", NewCommits: []string{"x3"}},
	}
	var refused, accepted error
	s.env.RegisterDelayedCallback(func() {
		s.Empty(s.started, "nothing is deployed while held")
		v, err := s.env.QueryWorkflow(contract.WatcherStatusQuery)
		s.Require().NoError(err)
		var st WatcherStatus
		s.Require().NoError(v.Get(&st))
		s.Require().NotNil(st.Held)
		s.Equal("a1", st.Held.LastSeen)
		s.env.UpdateWorkflow(contract.AckRewriteUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { refused = err }, OnComplete: func(any, error) {},
		}, AckRequest{})
		s.env.UpdateWorkflow(contract.AckRewriteUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { accepted = err }, OnComplete: func(any, error) {},
		}, AckRequest{User: "carol"})
	}, time.Hour)
	s.run(WatcherInput{Branch: "main", LastSeen: "a1"})
	s.Require().Error(refused)
	s.Contains(refused.Error(), "needs a user")
	s.NoError(accepted)
	s.Equal([]string{"x3"}, s.started, "after the ack, commits after the rewritten head deploy")
	s.Equal("x2", s.lastIn[1], "polling resumes from the head seen with the rewrite")
	s.Contains(s.notes, "history rewritten")
	s.Contains(s.notes, "rewrite acknowledged")
}

func (s *WatcherSuite) TestRewriteContinuePolicy() {
	s.polls = []activities.PollResult{{Head: "x2", Rewritten: true, OnRewrite: config.RewriteContinue}}
	s.run(WatcherInput{Branch: "main", LastSeen: "a1"})
	s.Empty(s.started)
	s.Equal("x2", s.lastIn[1])
	s.Contains(s.notes, "history rewritten")
}

func (s *WatcherSuite) TestOutageReportedOnceAndRecovery() {
	// Attempts 2-11: two polls that fail after all five of their attempts.
	for n := 2; n <= 11; n++ {
		s.errs[n] = errors.New("remote down")
	}
	s.polls = []activities.PollResult{{Head: "a1"}, {Head: "a2", NewCommits: []string{"a2"}}}
	s.run(WatcherInput{Branch: "main"})
	s.Equal([]string{"a2"}, s.started, "no commit is skipped across the outage")
	failing := slices.DeleteFunc(slices.Clone(s.notes), func(n string) bool { return n != "polling failing" })
	s.Len(failing, 1, "an outage is reported once")
	s.Contains(s.notes, "polling recovered")
}

// The runs the watcher starts enter their stacks' queues in merge order,
// after they exist, and know they need not ask.
func (s *WatcherSuite) TestStartedRunsEnterTheirQueuesInMergeOrder() {
	s.polls = []activities.PollResult{
		{Head: "base"},
		{Head: "c3", NewCommits: []string{"c1", "c2", "c3"}, Stacks: [][]string{{"api", "web"}, nil, {"web"}}},
	}
	s.run(WatcherInput{Branch: "main"})
	s.Equal([]contract.QueueRequest{
		{Stack: "api", RunID: "change/main/c1", Commit: "c1"},
		{Stack: "web", RunID: "change/main/c1", Commit: "c1"},
		{Stack: "web", RunID: "change/main/c3", Commit: "c3", Alone: true},
	}, s.queued, "a run that needs one stack may join a batch there")
	s.Equal([]string{"api", "web"}, s.inputs["c1"].Enqueued)
	s.Empty(s.inputs["c2"].Enqueued)
}

// A run started by hand asks the watcher for its places; the watcher, the
// one writer to the branch's queues, serves it between polls, and also
// while a rewrite holds it (queued runs must not wait for the ack).
func (s *WatcherSuite) TestServesEnqueueRequestsEvenWhenHeld() {
	s.polls = []activities.PollResult{{Head: "x2", Rewritten: true}}
	req := contract.EnqueueRequest{Entries: []contract.QueueRequest{{Stack: "web", RunID: "change/main/manual", Commit: "manual"}}}
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.EnqueueRunSignal, req) }, 10*time.Minute)
	var during []contract.QueueRequest
	s.env.RegisterDelayedCallback(func() {
		s.mu.Lock()
		during = slices.Clone(s.queued)
		s.mu.Unlock()
		s.env.UpdateWorkflow(contract.AckRewriteUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(any, error) {},
		}, AckRequest{User: "carol"})
	}, time.Hour)
	s.run(WatcherInput{Branch: "main", LastSeen: "a1"})
	s.Equal(req.Entries, during, "served while the rewrite was held")
}

// A request that arrives while the watcher serves its last requests before
// continuing as new (issue 19, item 4) is carried to the next run.
func (s *WatcherSuite) TestRequestRacingContinueAsNewIsCarried() {
	first := contract.EnqueueRequest{Entries: []contract.QueueRequest{{Stack: "web", RunID: "change/main/m1", Commit: "m1"}}}
	racing := contract.EnqueueRequest{Entries: []contract.QueueRequest{{Stack: "api", RunID: "change/main/m2", Commit: "m2"}}}
	// The run continues as new after the poll that serves first, and the
	// racing request arrives while that enqueue runs.
	s.env.RegisterDelayedCallback(func() {
		s.env.SetContinueAsNewSuggested(true)
		s.env.SignalWorkflow(contract.EnqueueRunSignal, first)
	}, 100*time.Second+time.Second/2)
	s.onEnqueue = func(req contract.EnqueueRequest) {
		if req.Entries[0].RunID == first.Entries[0].RunID {
			s.env.SignalWorkflow(contract.EnqueueRunSignal, racing)
		}
	}
	s.env.ExecuteWorkflow(WatcherWorkflow, WatcherInput{Branch: "main", LastSeen: "a1"})
	s.True(s.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &can)
	var next WatcherInput
	s.Require().NoError(converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	s.Equal(first.Entries, s.queued, "the racing request came after the last enqueue of this run")
	s.Equal(racing.Entries, next.Pending, "and goes to the next run")
	s.Equal("a1", next.LastSeen)
}

// The next run serves the requests carried over before it polls.
func (s *WatcherSuite) TestCarriedRequestsAreServedFirst() {
	pending := []contract.QueueRequest{{Stack: "api", RunID: "change/main/m2", Commit: "m2"}}
	s.polls = []activities.PollResult{{Head: "c1", NewCommits: []string{"c1"}, Stacks: [][]string{{"api"}}}}
	s.run(WatcherInput{Branch: "main", LastSeen: "a1", Pending: pending})
	s.Require().Len(s.queued, 2)
	s.Equal(pending[0], s.queued[0], "carried requests enter before the runs of new commits")
	s.Equal("change/main/c1", s.queued[1].RunID)
}
