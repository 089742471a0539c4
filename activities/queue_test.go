package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/changeops/changeops/contract"
)

// A batch takes the runs waiting next that need the stack alone, and stops
// at the first that does not: its newest member's tree holds every commit
// before it.
func TestBehind(t *testing.T) {
	t.Parallel()
	waiting := []contract.QueueEntry{
		{RunID: "B", Alone: true}, {RunID: "C", Alone: true},
		{RunID: "D"}, // needs another stack too
		{RunID: "E", Alone: true},
	}
	ids := func(es []contract.QueueEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.RunID)
		}
		return out
	}
	for _, c := range []struct {
		name   string
		st     contract.QueueState
		holder string
		want   []string
	}{
		{"up to a run that needs more", contract.QueueState{Holder: &contract.QueueEntry{RunID: "A"}, Waiting: waiting}, "A", []string{"B", "C"}},
		{"not the holder", contract.QueueState{Holder: &contract.QueueEntry{RunID: "A"}, Waiting: waiting}, "X", nil},
		{"free stack", contract.QueueState{Waiting: waiting}, "A", nil},
		{"first needs more", contract.QueueState{Holder: &contract.QueueEntry{RunID: "A"}, Waiting: waiting[2:]}, "A", nil},
	} {
		assert.Equal(t, c.want, ids(Behind(c.st, c.holder)), c.name)
	}
}

func withDecision(b *contract.Batched, approve bool, timeout time.Duration) *contract.Batched {
	if timeout > 0 {
		b.Timeout = timeout
	} else {
		b.Decision = &contract.BatchDecision{Approve: approve, User: "bob"}
	}
	return b
}

// A waiting run takes its outcome from its leader's record: the leader's
// own success for an unbisected batch, the outcome bisection recorded for
// its commit, and nothing from a run that does not lead a batch holding it.
func TestLeaderOutcome(t *testing.T) {
	t.Parallel()
	batch := func(bisected bool, outcomes ...contract.BatchOutcome) *contract.Batched {
		return &contract.Batched{Leader: "L", LeaderCommit: "l", Head: "m2", Members: []string{"l", "m1", "m2"}, Bisected: bisected, Outcomes: outcomes}
	}
	for _, c := range []struct {
		name, leader, commit, state string
		b                           *contract.Batched
		want                        string // the outcome, or part of the refusal
	}{
		{"succeeded", "L", "m1", contract.StateSucceeded, batch(false), contract.StateSucceeded},
		{"no-op", "L", "m2", contract.StateNoOp, batch(false), contract.StateNoOp},
		{"still running", "L", "m1", contract.StateApplying, batch(false), "has not said how its batch ended"},
		{"failed leader", "L", "m1", contract.StateRolledBack, batch(false), "has not said how its batch ended"},
		{"no batch", "L", "m1", contract.StateSucceeded, nil, "leads no batch"},
		{"another's batch", "X", "m1", contract.StateSucceeded, batch(false), "leads no batch"},
		{"not a member", "L", "zz", contract.StateSucceeded, batch(false), "does not hold that commit"},
		{"the leader's own commit", "L", "l", contract.StateSucceeded, batch(false), "does not hold that commit"},
		{"empty members", "L", "m1", contract.StateSucceeded, &contract.Batched{Leader: "L"}, "does not hold that commit"},
		{"rejected batch", "L", "m1", contract.StateRejected, withDecision(batch(false), false, 0), contract.StateRejected},
		{"expired batch", "L", "m1", contract.StateExpired, withDecision(batch(false), false, time.Hour), contract.StateExpired},
		{"rejected alone", "L", "m1", contract.StateRejected, batch(false), "has not said"},
		{"expired alone", "L", "m1", contract.StateExpired, batch(false), "has not said"},
		{"bisected", "L", "m2", contract.StateRollingBack, batch(true, contract.BatchOutcome{Commit: "m2", State: contract.StateRolledBack, Revert: "r"}), contract.StateRolledBack},
		{"bisected, not yet told", "L", "m1", contract.StateSucceeded, batch(true, contract.BatchOutcome{Commit: "m2", State: contract.StateRolledBack}), "has not said"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := LeaderOutcome(c.leader, c.commit, c.state, c.b)
			if err != nil {
				assert.Contains(t, err.Error(), c.want)
				return
			}
			assert.Equal(t, c.want, got.State)
			assert.Empty(t, got.Outcomes, "other members' outcomes stay with the leader")
		})
	}
}
