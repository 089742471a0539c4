package workflows

import (
	"go.temporal.io/sdk/temporal"

	"github.com/stretchr/testify/mock"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
)

// An apply that failed before its update began (the stack stayed locked
// by someone else past lock_wait) changed nothing: the run fails, saying
// so, with no restore and no revert of a change that was never deployed.
func (s *ChangeSuite) TestApplyThatNeverBeganIsNotRolledBack() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.env.OnActivity(a.Apply, mock.Anything, mock.Anything).Return(activities.ApplyResult{},
		temporal.NewApplicationErrorWithOptions("apply stack web (prod) at 3f2a91c: waiting for the lock held by bob@laptop (pid 7) since 2026-12-02T10:00:00Z (still failing after 4h0m0s; stacks[].lock_wait of web is 4h0m0s)",
			activities.ErrStackLocked, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{activities.ApplyFailure{Began: false}}})).Once()

	res := s.run()
	s.Equal(contract.StateFailed, res.State)
	s.Contains(res.Reason, "waiting for the lock held by bob@laptop")
	s.Contains(res.Reason, "nothing was applied, so nothing is rolled back")
	st := s.status()
	s.Empty(st.RevertCommit)
	s.Empty(st.Restored)
	s.NotContains(states(st), contract.StateRollingBack)
}

// Once the update began, the same failure rolls back as before.
func (s *ChangeSuite) TestApplyThatBeganIsRolledBack() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.env.OnActivity(a.Apply, mock.Anything, mock.MatchedBy(func(in activities.StackInput) bool { return in.Commit == sha })).Return(activities.ApplyResult{},
		temporal.NewApplicationErrorWithOptions("apply stack web (prod) at 3f2a91c: error: throttled (still failing after 10m0s)",
			activities.ErrPulumiTransient, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{activities.ApplyFailure{Began: true}}})).Once()
	s.rollback(activities.RevertResult{Revert: "feedface"}, true)

	res := s.run()
	s.Equal(contract.StateRolledBack, res.State)
	s.Equal("feedface", res.RevertCommit)
}
