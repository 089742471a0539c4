package workflows

import (
	"time"

	"github.com/changeops/changeops/contract"
)

// A holder's release takes the runs its batch deployed out of the queue
// (docs/batching.md): they are never granted, and the batch's newest
// commit is the last good state.
func (s *QueueSuite) TestReleaseTakesTheBatchOut() {
	s.enqueue(0, "A", "B", "C", "D")
	s.at(time.Minute, func() {
		s.env.SignalWorkflow(contract.ReleaseSignal, contract.Release{RunID: "A",
			Deployed: &contract.Deployed{Commit: "sha-C", RunID: "A"}, Batched: []string{"B", "C"}})
	})

	st := s.run(2*time.Minute, contract.QueueState{Stack: "web"})
	s.Equal([]string{"A", "D"}, s.grants, "the runs the batch deployed are never granted")
	s.Equal("sha-C", s.got["D"].LastGood.Commit, "the batch's newest commit is the last good state")
	s.Empty(st.Waiting)
}
