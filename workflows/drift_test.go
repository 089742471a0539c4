package workflows

import (
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
)

// driftStack is a stack with a drift policy.
func driftStack(policy string) config.Stack {
	st := stack("web", config.ApprovalAuto, "bob")
	st.Drift = policy
	return st
}

// drifted is what a check finds when the page was edited out of band.
var drifted = activities.DriftResult{
	Plan:      activities.PlanResult{Stack: "web", Update: 1, Same: 1, Steps: "steps-of-the-fix", Diff: "~ content"},
	Resources: []activities.Drifted{{URN: "urn:pulumi:prod::site::changeops:index:File::page", Op: "update", Properties: []string{"content"}}},
}

// driftSetup mocks the stack's configuration and its queue, which grants
// it (with last good state good) as often as asked.
func (s *ChangeSuite) driftSetup(st config.Stack, good *contract.Deployed) {
	s.lastGood = good
	s.env.OnActivity(a.StackConfig, mock.Anything, st.Name).Return(st, nil).Once()
	s.env.OnActivity(a.Enqueue, mock.Anything, mock.Anything).Return(nil)
	s.grant(0, st.Name, st.Name) // buffered: a heal enters the queue again
}

// check mocks the drift check at sha.
func (s *ChangeSuite) check(found activities.DriftResult) {
	s.env.OnActivity(a.DriftCheck, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool {
		return in.Stack.Name == "web" && in.Commit == sha && in.Refresh
	})).Return(found, nil).Once()
}

func (s *ChangeSuite) runDrift(in DriftInput) ChangeResult {
	in.Stack = "web"
	s.env.ExecuteWorkflow(contract.DriftWorkflowName, in)
	s.True(s.env.IsWorkflowCompleted())
	s.NoError(s.env.GetWorkflowError())
	var res ChangeResult
	s.NoError(s.env.GetWorkflowResult(&res))
	return res
}

// reapply mocks up over the drift: refreshed, at the last good commit,
// bound to approved steps when a person approved them.
func (s *ChangeSuite) reapply(approved string) {
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool {
		return in.Stack.Name == "web" && in.Commit == sha && in.Refresh && in.Approved == approved
	})).Return(activities.ApplyResult{Stack: "web", Update: 1}, nil).Once()
}

// A stack that matches git: recorded, nothing said, nothing applied, and
// the queue gets the stack back without a new good state.
func (s *ChangeSuite) TestDriftNoneIsSilent() {
	s.driftSetup(driftStack(config.DriftApprove), &contract.Deployed{Commit: sha})
	s.check(activities.DriftResult{Plan: activities.PlanResult{Stack: "web", Same: 2}})

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StateDriftNone, res.State)
	st := s.status()
	s.Equal(contract.KindDrift, st.Kind)
	s.Equal([]string{contract.StateDriftChecking, contract.StateQueued, contract.StateDriftChecking, contract.StateDriftNone}, states(st))
	s.Empty(s.notes, "no drift, no message")
	s.Equal(contract.Release{RunID: st.ID}, s.released["web"])
}

// notify: told what differs, nothing else.
func (s *ChangeSuite) TestDriftNotifyOnlyTells() {
	s.driftSetup(driftStack(config.DriftNotify), &contract.Deployed{Commit: sha})
	s.check(drifted)

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StateDriftFound, res.State)
	s.Contains(res.Reason, "policy notify")
	s.Contains(res.Reason, "changeops drift web --heal")
	s.Equal([]string{"drift found", contract.StateDriftFound}, s.notes)
	s.Contains(s.events[0].Detail, "update urn:pulumi:prod::site::changeops:index:File::page (content)")
	s.Len(s.events[0].Plans, 1)
}

// approve: Re-apply git runs the approved fix, refreshed, then verifies.
func (s *ChangeSuite) TestDriftApprovedIsReapplied() {
	s.driftSetup(driftStack(config.DriftApprove), &contract.Deployed{Commit: sha})
	s.check(drifted)
	s.reapply(drifted.Plan.Steps)
	s.verify("web", true).Once()
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)

	res := s.runDrift(DriftInput{})
	s.NoError(refused)
	s.Equal(contract.StateDriftHealed, res.State)
	st := s.status()
	s.Equal([]string{contract.StateDriftChecking, contract.StateQueued, contract.StateDriftChecking, contract.StateAwaitingApproval, contract.StateQueued, contract.StateApplying, contract.StateVerifying, contract.StateDriftHealed}, states(st))
	s.Equal([]string{"drift found", "awaiting approval", "re-apply approved by bob", "re-applying 3f2a91c", "re-applied", "verified web", contract.StateDriftHealed}, s.notes)
	s.Equal("Re-apply git", s.events[1].Ask.ApproveLabel)
	s.Equal("Accept", s.events[1].Ask.RejectLabel)
	s.Equal(contract.Release{RunID: st.ID}, s.released["web"], "a heal restores the last good state; it is not a new one")
}

// approve: Accept leaves the stack alone.
func (s *ChangeSuite) TestDriftAccepted() {
	s.driftSetup(driftStack(config.DriftApprove), &contract.Deployed{Commit: sha})
	s.check(drifted)
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: false, User: "bob", Comment: "hotfix stays"}, &refused)

	res := s.runDrift(DriftInput{})
	s.NoError(refused)
	s.Equal(contract.StateDriftAccepted, res.State)
	s.Contains(res.Reason, "accepted by bob")
	s.Contains(res.Reason, "hotfix stays")
}

// approve with no decision: the drift stays on record as found.
func (s *ChangeSuite) TestDriftUndecidedStaysFound() {
	s.driftSetup(driftStack(config.DriftApprove), &contract.Deployed{Commit: sha})
	s.check(drifted)

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StateDriftFound, res.State)
	s.Contains(res.Reason, "no decision within 1h0m0s")
}

// A decision comes from an approver of the stack only.
func (s *ChangeSuite) TestDriftDecisionNeedsAnApprover() {
	s.driftSetup(driftStack(config.DriftApprove), &contract.Deployed{Commit: sha})
	s.check(drifted)
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "mallory"}, &refused)

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StateDriftFound, res.State)
	s.ErrorContains(refused, "mallory may not decide the drift check of stack web")
}

// heal: re-applied without a click, the policy recorded as the decider;
// --heal (DriftInput.Policy) overrides a notify stack the same way.
func (s *ChangeSuite) TestDriftHealedByPolicy() {
	s.driftSetup(driftStack(config.DriftHeal), &contract.Deployed{Commit: sha})
	s.check(drifted)
	s.reapply("")
	s.verify("web", true).Once()

	res := s.runDrift(DriftInput{Policy: config.DriftHeal, By: "carol"})
	s.Equal(contract.StateDriftHealed, res.State)
	st := s.status()
	s.True(st.Decision.Auto)
	s.Equal("Drift check of stack web (asked by carol)", st.Commit.Subject)
}

// Anyone who can start a workflow can ask for --heal, so on a stack whose
// own policy is not heal it asks the approvers instead of healing alone.
func (s *ChangeSuite) TestDriftHealOverrideAsksTheApprovers() {
	s.driftSetup(driftStack(config.DriftNotify), &contract.Deployed{Commit: sha})
	s.check(drifted)
	s.reapply(drifted.Plan.Steps)
	s.verify("web", true).Once()
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)

	res := s.runDrift(DriftInput{Policy: config.DriftHeal, By: "mallory"})
	s.NoError(refused)
	s.Equal(contract.StateDriftHealed, res.State)
	st := s.status()
	s.False(st.Decision.Auto)
	s.Equal("bob", st.Decision.User)
	s.Contains(states(st), contract.StateAwaitingApproval)
}

// A change that deployed the stack while the drift waited for a decision
// makes the check stale: nothing is re-applied.
func (s *ChangeSuite) TestDriftStaleAfterAChange() {
	st := driftStack(config.DriftApprove)
	s.env.OnActivity(a.StackConfig, mock.Anything, "web").Return(st, nil).Once()
	s.env.OnActivity(a.Enqueue, mock.Anything, mock.Anything).Return(nil).Twice()
	s.lastGood = &contract.Deployed{Commit: sha}
	s.grant(0, "web")
	s.check(drifted)
	var refused error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob"}, &refused)
	s.env.RegisterDelayedCallback(func() {
		s.env.SignalWorkflow(contract.GrantSignal, contract.Grant{Stack: "web", LastGood: &contract.Deployed{Commit: "b0b0b0b"}})
	}, 2*time.Minute)

	res := s.runDrift(DriftInput{})
	s.NoError(refused)
	s.Equal(contract.StateDriftFound, res.State)
	s.Contains(res.Reason, "a change deployed web while the drift waited")
}

// A stack never deployed has nothing to drift from.
func (s *ChangeSuite) TestDriftWithoutLastGood() {
	s.driftSetup(driftStack(config.DriftHeal), nil)
	s.env.OnActivity(a.LastGood, mock.Anything, activities.LastGoodInput{Stack: "web"}).Return(activities.LastGoodResult{}, nil).Once()

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StateNoOp, res.State)
	s.Contains(res.Reason, "no successful change yet")
	s.Empty(s.notes)
}
