package workflows

import (
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
)

// A run whose request for a place was lost (issue 19, item 4) asks again
// after queueAskEvery, only for the stacks it does not hold yet, and is
// granted once the watcher serves the new request.
func (s *ChangeSuite) TestLostEnqueueRequestIsAskedAgain() {
	s.env.SetWorkflowRunTimeout(time.Hour) // a run that never asks again fails here, not years later
	s.inspectOnly(stack("api", config.ApprovalAuto), stack("web", config.ApprovalAuto))
	s.grant(time.Minute, "api") // web's request is lost
	asked := func() []contract.EnqueueRequest {
		s.mu.Lock()
		defer s.mu.Unlock()
		return append([]contract.EnqueueRequest(nil), s.asked...)
	}
	// The watcher serves requests that reach it: web is granted once the
	// run has asked again (queueAskEvery after the api grant).
	s.env.RegisterDelayedCallback(func() {
		if len(asked()) > 1 {
			s.env.SignalWorkflow(contract.GrantSignal, contract.Grant{Stack: "web"})
		}
	}, 2*queueAskEvery)
	s.effective(activities.EffectiveResult{})
	for _, name := range []string{"api", "web"} {
		s.plan(name, activities.PlanResult{Update: 1})
		s.apply(name)
		s.verify(name, true).Once()
	}

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	id := s.status().ID
	s.Equal([]contract.EnqueueRequest{
		{Entries: []contract.QueueRequest{{Stack: "api", RunID: id, Commit: sha}, {Stack: "web", RunID: id, Commit: sha}}},
		{Entries: []contract.QueueRequest{{Stack: "web", RunID: id, Commit: sha}}},
	}, asked(), "asked once at the start, then again for web only")
}

// A run granted at once sets no timer to ask again.
func (s *ChangeSuite) TestGrantedRunDoesNotAskAgain() {
	s.inspect(stack("web", config.ApprovalAuto))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()

	s.Equal(contract.StateSucceeded, s.run().State)
	s.Len(s.asked, 1)
}
