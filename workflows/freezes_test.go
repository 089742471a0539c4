package workflows

import (
	"context"
	"strings"
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
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/gate/gatetest"
	"github.com/changeops/changeops/internal/notify"
)

// FreezesSuite drives the freezes workflow: signed freezes and unfreezes,
// refusals, the waiting runs woken in order, freezes that run out, and the
// freezes of a terminated run kept by the next.
type FreezesSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	mu  sync.Mutex
	// woken are the runs signalled to check their window, in order.
	woken []string
	// announced are the steps of the freezes' announcements, in order.
	announced []string
}

func TestFreezesSuite(t *testing.T) { suite.Run(t, new(FreezesSuite)) }

const freezesID = "default-test-workflow-id"

func (s *FreezesSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(&activities.Activities{})
	Workflows{Gate: testGate}.Register(s.env)
	s.woken, s.announced = nil, nil
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, e notify.Event) (notify.Thread, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.Equal(notify.KindFreeze, e.Kind)
		s.announced = append(s.announced, e.Step+": "+e.Detail)
		return notify.Thread{}, nil
	}).Maybe()
	s.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.WindowRecheckSignal, mock.Anything).Return(
		func(_, id, _, _ string, _ any) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.woken = append(s.woken, id)
			return nil
		}).Maybe()
}

func (s *FreezesSuite) AfterTest(_, _ string) { s.env.AssertExpectations(s.T()) }

func (s *FreezesSuite) prior(st activities.FreezesState) {
	s.env.OnActivity(a.PriorFreezes, mock.Anything, activities.PriorFreezesInput{WorkflowID: freezesID, RunID: "default-test-run-id"}).
		Return(st, nil).Once()
}

func (s *FreezesSuite) state() activities.FreezesState {
	v, err := s.env.QueryWorkflow(contract.FreezesQuery)
	s.Require().NoError(err)
	var st activities.FreezesState
	s.Require().NoError(v.Get(&st))
	return st
}

// claim is what `changeops freeze`/`unfreeze` sign for the state shown.
func freezeClaim(action, who, stack, reason string, st activities.FreezesState, now time.Time) FreezeRequest {
	signed, err := gate.SignSSH(gatetest.Signer(who), gate.Claim{WorkflowID: freezesID, Action: action, Stack: stack, Comment: reason,
		Plan: st.Digest(), Person: who, IssuedAt: now})
	if err != nil {
		panic(err)
	}
	return FreezeRequest{Signed: &signed}
}

// send sends a freeze or unfreeze made by build after d.
func (s *FreezesSuite) send(d time.Duration, update string, build func(st activities.FreezesState, now time.Time) FreezeRequest, refused *error) {
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(update, "", &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { *refused = err },
			OnComplete: func(any, error) {},
		}, build(s.state(), s.env.Now()))
	}, d)
}

func (s *FreezesSuite) at(d time.Duration, f func()) { s.env.RegisterDelayedCallback(f, d) }

func (s *FreezesSuite) run(d time.Duration) {
	s.at(d, func() { s.env.CancelWorkflow() })
	s.env.ExecuteWorkflow(contract.FreezesWorkflowName, activities.FreezesState{})
	s.True(s.env.IsWorkflowCompleted())
}

func (s *FreezesSuite) TestFreezeAndUnfreezeAreSignedAndWakeTheWaiters() {
	s.prior(activities.FreezesState{})
	var unsigned, byStranger, freeze, replayed, wrongAction, noReason, notFrozen, onlyAll, unfreeze error
	s.send(time.Minute, contract.FreezeUpdate, func(activities.FreezesState, time.Time) FreezeRequest { return FreezeRequest{} }, &unsigned)
	s.send(2*time.Minute, contract.FreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		req := freezeClaim(gate.ActionFreeze, "eve", "web", "because", st, now)
		return req
	}, &byStranger)
	var first FreezeRequest
	s.send(3*time.Minute, contract.FreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		first = freezeClaim(gate.ActionFreeze, "bob", "web", "incident 42", st, now)
		return first
	}, &freeze)
	s.send(4*time.Minute, contract.FreezeUpdate, func(activities.FreezesState, time.Time) FreezeRequest { return first }, &replayed)
	// Two runs wait on web, and register in this order.
	s.at(5*time.Minute, func() {
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "change/main/b", Stacks: []string{"web"}})
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "change/main/a", Stacks: []string{"web", "db"}})
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "change/main/b", Stacks: []string{"web"}})
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "watcher/main"})
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "change/" + strings.Repeat("x", 600)})
	})
	s.send(6*time.Minute, contract.UnfreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionFreeze, "mallory", "web", "over", st, now) // a freeze's claim sent as an unfreeze
	}, &wrongAction)
	s.send(7*time.Minute, contract.UnfreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionUnfreeze, "mallory", "web", " ", st, now)
	}, &noReason)
	s.send(8*time.Minute, contract.UnfreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionUnfreeze, "mallory", "db", "db too", st, now)
	}, &notFrozen)
	var frozen activities.FreezesState
	s.at(9*time.Minute, func() { frozen = s.state() })
	s.send(10*time.Minute, contract.UnfreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionUnfreeze, "mallory", "web", "fixed", st, now)
	}, &unfreeze)
	s.send(11*time.Minute, contract.UnfreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionUnfreeze, "mallory", "", "all", st, now)
	}, &onlyAll)
	s.run(time.Hour)

	s.ErrorContains(unsigned, "the freeze is not signed")
	s.ErrorContains(byStranger, "is not in any people entry")
	s.NoError(freeze)
	s.ErrorContains(replayed, "the freezes changed since the freeze was signed (freezes@0, now freezes@1)")
	s.ErrorContains(wrongAction, `the claim is not an unfreeze (it is "freeze")`)
	s.ErrorContains(noReason, "an unfreeze needs a reason")
	s.ErrorContains(notFrozen, "stack db is not frozen")
	s.NoError(unfreeze)
	s.ErrorContains(onlyAll, "nothing is frozen")

	s.Require().Len(frozen.Freezes, 1)
	f := frozen.Freezes[0]
	s.Equal("web", f.Stack)
	s.Equal("bob", f.By)
	s.Equal("incident 42", f.Reason)
	s.Equal(gate.MethodSSH, f.Method)
	s.Equal(gate.Fingerprint(gatetest.Person("bob").Keys[0]), f.Key)
	s.Equal([]activities.Waiter{{RunID: "change/main/b"}, {RunID: "change/main/a"}}, frozen.Waiters,
		"waiters in the order they came, each once, with no more than a run's ID; forged ones dropped")

	st := s.state()
	s.Empty(st.Freezes)
	s.Empty(st.Waiters)
	s.Equal(2, st.Seq)
	// The signals are sent in the order the runs began waiting, but the
	// test environment delivers mocked external signals concurrently, so
	// only who was woken, once each, is asserted here; the order is in
	// frozen.Waiters above, which wakeWaiters walks.
	s.ElementsMatch([]string{"change/main/b", "change/main/a"}, s.woken, "woken once each")
	s.Equal([]string{
		"stack web frozen by bob: incident 42\nRuns plan and ask as usual, then wait in waiting-for-window; an apply already running finishes.",
		"stack web unfrozen by mallory: fixed\nThe runs waiting on it check their windows now.",
	}, s.announced, "each accepted freeze and unfreeze announced once, refusals not at all")
	s.Require().Len(st.Log, 2)
	s.Equal(gate.ActionFreeze, st.Log[0].Action)
	s.Equal(activities.FreezeEvent{Action: gate.ActionUnfreeze, Freeze: activities.Freeze{Stack: "web", Reason: "fixed", By: "mallory",
		Method: gate.MethodSSH, Key: gate.Fingerprint(gatetest.Person("mallory").Keys[0]), At: st.Log[1].At}}, st.Log[1])
}

// A freeze with an end runs out by itself, on a timer, and wakes the
// waiting runs; a stack frozen only by the freeze of every stack cannot
// be unfrozen alone.
func (s *FreezesSuite) TestFreezeUntilRunsOut() {
	s.prior(activities.FreezesState{})
	var all, one error
	var until time.Time
	s.send(time.Minute, contract.FreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		until = now.Add(time.Hour)
		signed, err := gate.SignSSH(gatetest.Signer("bob"), gate.Claim{WorkflowID: freezesID, Action: gate.ActionFreeze, Comment: "release night",
			Plan: st.Digest(), Person: "bob", IssuedAt: now, Until: until})
		s.Require().NoError(err)
		return FreezeRequest{Signed: &signed}
	}, &all)
	s.at(2*time.Minute, func() {
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "change/main/a", Stacks: []string{"web"}})
	})
	s.send(3*time.Minute, contract.UnfreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionUnfreeze, "mallory", "web", "only web", st, now)
	}, &one)
	var during activities.FreezesState
	s.at(50*time.Minute, func() { during = s.state() })
	s.run(3 * time.Hour)

	s.NoError(all)
	s.ErrorContains(one, "stack web is frozen only by the freeze of every stack")
	s.Require().Len(during.Freezes, 1)
	s.True(until.Equal(during.Freezes[0].Until))
	st := s.state()
	s.Empty(st.Freezes, "ran out")
	s.Equal("expired", st.Log[len(st.Log)-1].Action)
	s.Equal([]string{"change/main/a"}, s.woken)
	s.Require().Len(s.announced, 2)
	s.Equal("freeze of every stack ran out: frozen by bob: release night", s.announced[1])
}

// A freezes workflow started afresh (after someone terminated the last)
// keeps the last run's freezes: terminating lifts nothing.
func (s *FreezesSuite) TestFreshRunKeepsTheLastRunsFreezes() {
	old := activities.Freeze{Stack: "web", Reason: "incident", By: "bob", Method: gate.MethodSSH}
	s.prior(activities.FreezesState{Freezes: []activities.Freeze{old}, Seq: 7})
	var forged error
	s.send(time.Minute, contract.UnfreezeUpdate, func(activities.FreezesState, time.Time) FreezeRequest { return FreezeRequest{} }, &forged)
	var st activities.FreezesState
	s.at(2*time.Minute, func() { st = s.state() })
	s.env.RegisterDelayedCallback(func() { s.env.CancelWorkflow() }, time.Hour)
	// A start input is not trusted: only a continued run carries state.
	s.env.ExecuteWorkflow(contract.FreezesWorkflowName, activities.FreezesState{Seq: 99})

	s.ErrorContains(forged, "not signed")
	s.Equal([]activities.Freeze{old}, st.Freezes)
	s.Equal(7, st.Seq)
}

// Continue-as-new carries the freezes, the waiting runs (one registered
// while it continues too) and the record; the next run trusts that state
// and reads nothing back.
func (s *FreezesSuite) TestContinueAsNewKeepsTheFreezes() {
	s.prior(activities.FreezesState{})
	var freeze error
	s.send(time.Minute, contract.FreezeUpdate, func(st activities.FreezesState, now time.Time) FreezeRequest {
		return freezeClaim(gate.ActionFreeze, "bob", "web", "incident", st, now)
	}, &freeze)
	s.at(2*time.Minute, func() {
		s.env.SetContinueAsNewSuggested(true)
		s.env.SignalWorkflow(contract.WaitingSignal, activities.Waiter{RunID: "change/main/a", Stacks: []string{"web"}})
	})
	s.env.ExecuteWorkflow(contract.FreezesWorkflowName, activities.FreezesState{})
	s.True(s.env.IsWorkflowCompleted())
	s.NoError(freeze)
	var can *workflow.ContinueAsNewError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &can)
	var next activities.FreezesState
	s.Require().NoError(converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	s.Require().Len(next.Freezes, 1)
	s.Equal("bob", next.Freezes[0].By)
	s.Equal([]activities.Waiter{{RunID: "change/main/a"}}, next.Waiters)
	s.Equal(1, next.Seq)
	s.Len(next.Log, 1)
}
