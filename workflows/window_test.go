package workflows

import (
	"context"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/gate/gatetest"
)

// windowScript is what the mocked Window activity answers: answer, given
// the test clock, or allowed without one; checks records when each check
// was asked, on the test clock.
type windowScript struct {
	answer func(now time.Time) activities.WindowResult
	checks []time.Time
	// applied is when (test clock) the first apply began.
	applied time.Time
}

func (s *ChangeSuite) window(_ context.Context, in activities.WindowInput) (activities.WindowResult, error) {
	now := s.env.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows.checks = append(s.windows.checks, now)
	if s.windows.answer == nil {
		return activities.WindowResult{Allowed: true, CheckedAt: now}, nil
	}
	res := s.windows.answer(now)
	res.CheckedAt = now
	return res, nil
}

// script sets the window's answers.
func (s *ChangeSuite) script(answer func(now time.Time) activities.WindowResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows.answer = answer
}

func (s *ChangeSuite) windowChecks() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.windows.checks...)
}

// applyTimed mocks the apply of web and records when it began.
func (s *ChangeSuite) applyTimed() {
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Stack.Name == "web" && in.Commit == sha })).
		Return(func(context.Context, activities.StackInput) (activities.ApplyResult, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.windows.applied.IsZero() {
				s.windows.applied = s.env.Now()
			}
			return activities.ApplyResult{Stack: "web", Update: 1, UpdateVersion: 2}, nil
		}).Once()
}

func (s *ChangeSuite) appliedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.windows.applied
}

// watch queries the run's status after d.
func (s *ChangeSuite) watch(d time.Duration, into *Status) {
	s.env.RegisterDelayedCallback(func() { *into = s.status() }, d)
}

// An approved change outside its window waits, durably on a timer, in
// waiting-for-window, saying when the window opens; it checks again when
// it opens, and applies.
func (s *ChangeSuite) TestWindowOpensInTwoHours() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.applyTimed()
	s.verify("web", true).Once()
	var opens time.Time
	s.script(func(now time.Time) activities.WindowResult {
		if opens.IsZero() {
			opens = now.Add(2 * time.Hour)
		}
		if now.Before(opens) {
			return activities.WindowResult{Opens: opens, Next: opens, Closed: []string{"outside the allow window nights (web)"}}
		}
		return activities.WindowResult{Allowed: true, Opens: now}
	})
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)
	var waiting Status
	s.watch(time.Hour, &waiting)

	res := s.run()
	s.NoError(refused)
	s.Equal(contract.StateSucceeded, res.State)
	st := s.status()
	s.Equal([]string{contract.StatePlanning, contract.StateQueued, contract.StatePlanning, contract.StateAwaitingApproval, contract.StateWaitingForWindow, contract.StateApplying, contract.StateVerifying, contract.StateSucceeded}, states(st))

	s.Equal(contract.StateWaitingForWindow, waiting.State, "an hour in, the run still waits")
	s.Contains(waiting.Detail, "outside the allow window nights (web)")
	s.Contains(waiting.Detail, "the window opens at "+opens.UTC().Format(time.RFC3339))
	s.Empty(waiting.Applies)

	checks := s.windowChecks()
	s.Require().Len(checks, 5, "checked at approval, every half hour, and when the window opened")
	s.Equal(opens, checks[4], "the last check is at the opening, on a durable timer")
	for i := 1; i < len(checks); i++ {
		s.LessOrEqual(checks[i].Sub(checks[i-1]), windowRecheckEvery)
	}
	s.False(s.appliedAt().Before(opens), "applied at %s, before the window opened at %s", s.appliedAt(), opens)
	s.Contains(s.notes, "waiting for window")
	s.Contains(s.notes, "window open")
	s.True(st.Window.Check.Allowed)
	s.False(st.Window.Overridden)
}

// A freeze set while the run waits for approval: the run plans and asks
// as usual, is approved, and then applies nothing until the freeze ends;
// the freezes workflow's wake-up makes it check at once.
func (s *ChangeSuite) TestFreezeAddedWhileAwaitingApproval() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.applyTimed()
	s.verify("web", true).Once()
	var start time.Time
	freeze := activities.Freeze{Stack: "web", Reason: "incident 7", By: "mallory", Method: gate.MethodSSH}
	s.script(func(now time.Time) activities.WindowResult {
		if now.Sub(start) < 25*time.Minute {
			return activities.WindowResult{Opens: now, Frozen: []activities.Freeze{freeze}}
		}
		return activities.WindowResult{Allowed: true, Opens: now}
	})
	s.env.RegisterDelayedCallback(func() { start = s.env.Now() }, 0)
	var asking, frozen Status
	s.watch(5*time.Minute, &asking) // frozen at 2m, while asking
	var refused error
	s.decide(10*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)
	s.watch(20*time.Minute, &frozen)
	// The freeze is lifted at 25m and the freezes workflow wakes the run.
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(contract.WindowRecheckSignal, WindowRecheck{Reason: "a freeze ended"}) }, 25*time.Minute)

	res := s.run()
	s.NoError(refused)
	s.Equal(contract.StateSucceeded, res.State)
	s.Equal(contract.StateAwaitingApproval, asking.State, "a frozen stack plans and asks as usual")
	s.Equal(contract.StateWaitingForWindow, frozen.State)
	s.Contains(frozen.Detail, "stack web frozen by mallory since")
	s.Contains(frozen.Detail, "incident 7; applies once unfrozen")
	s.Equal([]activities.Freeze{freeze}, frozen.Window.Check.Frozen)
	s.Empty(frozen.Applies, "nothing applies while frozen")
	s.Equal("bob", frozen.Decision.User)
	s.Equal(start.Add(25*time.Minute), s.appliedAt(), "woken by the signal at once, not at the half-hourly check (40m)")
	s.Len(s.windowChecks(), 2, "at approval, and on the wake-up")
}

// signOverride is an override vote as `changeops approve --override-window`
// signs it.
func signOverride(st Status, user, reason string, now time.Time) DecisionRequest {
	c := gate.Claim{WorkflowID: st.ID, RunID: st.RunID, Approve: true, Comment: reason, Plan: st.PlanDigest(),
		Person: user, IssuedAt: now, Action: gate.ActionOverride}
	signed, err := gate.SignSSH(gatetest.Signer(user), c)
	if err != nil {
		panic(err)
	}
	return DecisionRequest{Signed: &signed}
}

// override sends a vote made by build after d through the Update.
func (s *ChangeSuite) override(d time.Duration, build func(Status, time.Time) DecisionRequest, refused *error) {
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(contract.OverrideWindowUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { *refused = err },
			OnComplete: func(any, error) {},
		}, build(s.status(), s.env.Now()))
	}, d)
}

func voteBy(user, reason string) func(Status, time.Time) DecisionRequest {
	return func(st Status, now time.Time) DecisionRequest { return signOverride(st, user, reason, now) }
}

// slackVoteBy is a vote from `/changeops override`, vouched for by the
// Slack app, with the email Slack showed (empty: hidden).
func slackVoteBy(user, email, reason string) func(Status, time.Time) DecisionRequest {
	return func(st Status, now time.Time) DecisionRequest {
		c := gate.Claim{WorkflowID: st.ID, RunID: st.RunID, Approve: true, Comment: reason, Plan: st.PlanDigest(),
			SlackUser: user, SlackEmail: email, IssuedAt: now, Action: gate.ActionOverride}
		if p, ok := testGate.Person(user); ok {
			c.Person = p.Name
		}
		signed := gate.SignSlack(gate.SlackKey(testSlackSecret), c)
		return DecisionRequest{Signed: &signed}
	}
}

// Break glass: one approver's override is recorded and announced but
// applies nothing; a second, different approver's applies the change at
// once. Votes that are not signed overrides by an allowed, new person are
// refused.
func (s *ChangeSuite) TestOverrideWithOneThenTwoApprovers() {
	web := stack("web", config.ApprovalManual, "bob", "mallory", "alice", "U0ERIN")
	web.FourEyes = true
	s.inspect(web)
	s.plan("web", activities.PlanResult{Update: 1})
	s.applyTimed()
	s.verify("web", true).Once()
	s.script(func(time.Time) activities.WindowResult {
		return activities.WindowResult{Closed: []string{"deny window holidays until Tue 2026-01-06 23:59 CET (web)"},
			Frozen: []activities.Freeze{{Reason: "holidays", By: "dave"}}}
	})
	var approval, first, again, author, stranger, unsigned, decision, early, second, asApproval, hiddenEmail error
	s.override(30*time.Second, voteBy("bob", "too early"), &early)
	s.decideSigned(45*time.Second, voteBy("mallory", "an override is no approval"), &asApproval)
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &approval)
	s.override(5*time.Minute, voteBy("bob", "customer outage, fix must ship"), &first)
	s.override(6*time.Minute, voteBy("bob", "again"), &again)
	s.override(7*time.Minute, voteBy("alice", "mine"), &author)
	s.override(8*time.Minute, voteBy("dave", "me too"), &stranger)
	s.override(8*time.Minute+30*time.Second, slackVoteBy("U0ERIN", "", "from slack"), &hiddenEmail)
	s.override(9*time.Minute, func(Status, time.Time) DecisionRequest { return DecisionRequest{Approve: true, User: "mallory"} }, &unsigned)
	s.override(10*time.Minute, func(st Status, now time.Time) DecisionRequest {
		return sign(st, DecisionRequest{Approve: true, User: "mallory", Comment: "an approval, not an override"}, now)
	}, &decision)
	var afterOne Status
	s.watch(20*time.Minute, &afterOne)
	s.override(30*time.Minute, voteBy("mallory", "agreed: outage"), &second)

	res := s.run()
	s.NoError(approval)
	s.ErrorContains(early, "unknown update override-window", "no override before the run waits for its window")
	s.ErrorContains(asApproval, `the claim's action is "override-window", so it is no decision`)
	s.NoError(first)
	s.ErrorContains(again, "bob already voted to override change 3f2a91c: it takes 2 different people")
	s.ErrorContains(author, "alice is linked to the author of commit 3f2a91c")
	s.ErrorContains(stranger, "dave may not override the window of change 3f2a91c: the approvers of web are U0ERIN, alice, bob, mallory")
	s.ErrorContains(hiddenEmail, "the Slack vote of erin carries no email", "four eyes is never skipped for a Slack user whose email Slack hides")
	s.ErrorContains(unsigned, "the override is not signed")
	s.ErrorContains(decision, "the claim is not an override of the change window")
	s.NoError(second)

	s.Equal(contract.StateWaitingForWindow, afterOne.State, "one vote applies nothing")
	s.Empty(afterOne.Applies)
	s.Require().Len(afterOne.Window.Overrides, 1)
	s.Equal(contract.StateSucceeded, res.State)
	st := s.status()
	s.True(st.Window.Overridden)
	s.Equal([]string{"bob", "mallory"}, st.Window.voters())
	s.Equal("customer outage, fix must ship", st.Window.Overrides[0].Comment)
	s.Equal(gate.MethodSSH, st.Window.Overrides[1].Method)
	s.Contains(s.notes, "override vote by bob (1 of 2)")
	s.Contains(s.notes, "override vote by mallory (2 of 2)")
	s.Contains(s.notes, "window overridden by bob and mallory")
	s.False(s.appliedAt().Before(s.windowChecks()[0].Add(29*time.Minute)), "applied only after the second vote")
}

// A heal (drift policy heal) waits for the stack's window too; the
// drift check itself needs none.
func (s *ChangeSuite) TestDriftHealWaitsForWindow() {
	s.driftSetup(driftStack(config.DriftHeal), &contract.Deployed{Commit: sha})
	s.check(drifted)
	s.reapply("")
	s.verify("web", true).Once()
	var opens time.Time
	s.script(func(now time.Time) activities.WindowResult {
		if opens.IsZero() {
			opens = now.Add(3 * time.Hour)
		}
		if now.Before(opens) {
			return activities.WindowResult{Opens: opens, Next: opens, Closed: []string{"deny window day (web)"}}
		}
		return activities.WindowResult{Allowed: true}
	})

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StateDriftHealed, res.State)
	st := s.status()
	s.Equal([]string{contract.StateDriftChecking, contract.StateQueued, contract.StateDriftChecking, contract.StateQueued, contract.StateWaitingForWindow, contract.StateApplying, contract.StateVerifying, contract.StateDriftHealed}, states(st))
	checks := s.windowChecks()
	s.Require().NotEmpty(checks)
	s.Equal(opens, checks[len(checks)-1], "re-applied when the window opened")
}
