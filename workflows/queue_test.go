package workflows

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// QueueSuite drives StackQueueWorkflow: runs are granted the stack one at a
// time in the order they entered, with the last good state.
type QueueSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment

	mu     sync.Mutex
	grants []string                  // run IDs, in the order granted
	got    map[string]contract.Grant // what each was granted
	notes  []notify.Event
	gone   map[string]bool // runs whose grant signal fails (not running)
	open   map[string]bool // what RunOpen answers
}

func TestQueueSuite(t *testing.T) { suite.Run(t, new(QueueSuite)) }

func (s *QueueSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	// A mock of the previous test's environment may still be running (an
	// activity in flight when its workflow ended): reset under its lock.
	s.mu.Lock()
	s.grants, s.notes = nil, nil
	s.got, s.gone, s.open = map[string]contract.Grant{}, map[string]bool{}, map[string]bool{}
	s.mu.Unlock()
	s.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.GrantSignal, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.gone[id] {
				return errors.New("unknown external workflow execution")
			}
			s.grants = append(s.grants, id)
			s.got[id] = arg.(contract.Grant)
			return nil
		})
	s.env.OnActivity(a.RunOpen, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		open, known := s.open[id]
		return open || !known, nil
	}).Maybe()
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, e notify.Event) (notify.Thread, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.notes = append(s.notes, e)
		return notify.Thread{}, nil
	}).Maybe()
}

func (s *QueueSuite) at(d time.Duration, f func()) { s.env.RegisterDelayedCallback(f, d) }

func (s *QueueSuite) enqueue(d time.Duration, runs ...string) {
	s.at(d, func() {
		for _, r := range runs {
			s.env.SignalWorkflow(contract.EnqueueSignal, contract.QueueEntry{RunID: r, Commit: "sha-" + r})
		}
	})
}

func (s *QueueSuite) release(d time.Duration, run string, deployed *contract.Deployed) {
	s.at(d, func() { s.env.SignalWorkflow(contract.ReleaseSignal, contract.Release{RunID: run, Deployed: deployed}) })
}

// run executes the queue until d, then cancels it and returns its state.
func (s *QueueSuite) run(d time.Duration, start contract.QueueState) contract.QueueState {
	var st contract.QueueState
	s.at(d, func() {
		v, err := s.env.QueryWorkflow(contract.QueueStatusQuery)
		s.Require().NoError(err)
		s.Require().NoError(v.Get(&st))
		s.env.CancelWorkflow()
	})
	s.env.ExecuteWorkflow(StackQueueWorkflow, start)
	s.True(s.env.IsWorkflowCompleted())
	return st
}

func (s *QueueSuite) TestFirstInFirstOutWithLastGood() {
	s.enqueue(0, "A", "B", "C")
	s.enqueue(time.Second, "B") // a retried enqueue keeps its place
	s.release(time.Minute, "A", &contract.Deployed{Commit: "sha-A", RunID: "A"})
	s.release(2*time.Minute, "B", nil) // B rolled back: the last good stays A's

	st := s.run(3*time.Minute, contract.QueueState{Stack: "web"})
	s.Equal([]string{"A", "B", "C"}, s.grants)
	s.Nil(s.got["A"].LastGood)
	s.Equal("sha-A", s.got["B"].LastGood.Commit)
	s.Equal("sha-A", s.got["C"].LastGood.Commit, "a rolled-back run does not move the last good state")
	s.Equal("C", st.Holder.RunID)
	s.Empty(st.Waiting)
	s.Equal("web", s.got["C"].Stack)
}

func (s *QueueSuite) TestOneHolderAtATime() {
	s.enqueue(0, "A", "B")
	var during []string
	s.at(30*time.Minute, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		during = append(during, s.grants...)
	})
	s.release(time.Hour, "A", nil)

	s.run(2*time.Hour, contract.QueueState{Stack: "web"})
	s.Equal([]string{"A"}, during, "B waits while A holds the stack, however long")
	s.Equal([]string{"A", "B"}, s.grants)
}

// A waiting run that left (its signal says it no longer runs) is skipped
// and reported; the next one gets the stack.
func (s *QueueSuite) TestGrantToEndedRunSkipsIt() {
	s.gone["B"] = true
	s.enqueue(0, "A", "B", "C")
	s.release(time.Minute, "A", nil)

	st := s.run(2*time.Minute, contract.QueueState{Stack: "web"})
	s.Equal([]string{"A", "C"}, s.grants)
	s.Require().Len(st.Skipped, 1)
	s.Contains(st.Skipped[0], "queue of web moved past B")
	s.Require().Len(s.notes, 1)
	s.Equal("B", s.notes[0].RunID)
	s.Equal("queue moved on", s.notes[0].Step)
}

// A holder terminated or timed out never releases: the periodic check
// notices and the queue moves on.
func (s *QueueSuite) TestDeadHolderIsNoticed() {
	s.enqueue(0, "A", "B")
	s.at(5*time.Minute, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.open["A"] = false // terminated
	})

	st := s.run(10*time.Minute, contract.QueueState{Stack: "web", ProbeEvery: time.Minute})
	s.Equal([]string{"A", "B"}, s.grants)
	s.Equal("B", st.Holder.RunID)
	s.Require().Len(st.Skipped, 1)
	s.Contains(st.Skipped[0], "without releasing the stack")
}

// A release from a run still waiting (it ended early) takes it out.
func (s *QueueSuite) TestWaitingRunLeaves() {
	s.enqueue(0, "A", "B", "C")
	s.release(time.Second, "B", nil)
	s.release(time.Minute, "A", nil)

	s.run(2*time.Minute, contract.QueueState{Stack: "web"})
	s.Equal([]string{"A", "C"}, s.grants)
}

// Continue-as-new carries holder, waiting runs and last good over, and
// signals delivered meanwhile are not lost.
func (s *QueueSuite) TestContinueAsNewKeepsTheQueue() {
	s.enqueue(0, "A", "B")
	s.release(time.Minute, "A", &contract.Deployed{Commit: "sha-A"})
	s.at(2*time.Minute, func() {
		s.env.SetContinueAsNewSuggested(true)
		s.env.SignalWorkflow(contract.EnqueueSignal, contract.QueueEntry{RunID: "C"})
	})
	s.env.ExecuteWorkflow(StackQueueWorkflow, contract.QueueState{Stack: "web"})
	s.True(s.env.IsWorkflowCompleted())
	err := s.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	s.Require().ErrorAs(err, &can)
	var next contract.QueueState
	s.Require().NoError(converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	s.Equal("B", next.Holder.RunID)
	s.Equal("sha-A", next.LastGood.Commit)
	s.Require().Len(next.Waiting, 1)
	s.Equal("C", next.Waiting[0].RunID)
}

// A waiting run asks again for its place every few minutes: asking again,
// as holder or as waiting run, changes nothing.
func (s *QueueSuite) TestAskingAgainKeepsPlaces() {
	s.enqueue(0, "A", "B", "C")
	s.enqueue(5*time.Minute, "C", "B", "A")
	s.release(10*time.Minute, "A", nil)

	st := s.run(15*time.Minute, contract.QueueState{Stack: "web"})
	s.Equal([]string{"A", "B"}, s.grants, "A is granted once, B next")
	s.Equal("B", st.Holder.RunID)
	s.Require().Len(st.Waiting, 1)
	s.Equal("C", st.Waiting[0].RunID)
}
