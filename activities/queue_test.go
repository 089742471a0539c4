package activities

import (
	"testing"

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
