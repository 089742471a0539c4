package activities

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// stepRecorder digests the steps a preview announces. Two previews that
// would do the same thing to the same resources with the same inputs have
// the same digest; progress text, timings and resources left alone do not
// count.
type stepRecorder struct {
	events chan events.EngineEvent
	done   chan struct{}
	lines  []string
	// drifted lists the resources with a step, in the engine's order;
	// read it after digest.
	drifted []Drifted
}

func recordSteps() *stepRecorder {
	r := &stepRecorder{events: make(chan events.EngineEvent), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		// The Automation API closes the channel when the operation ends.
		for e := range r.events {
			if e.ResourcePreEvent == nil {
				continue
			}
			m := e.ResourcePreEvent.Metadata
			// A refresh step only reads what is live; what it found shows
			// in the steps that follow it.
			if m.Op == apitype.OpSame || m.Op == apitype.OpRead || m.Op == apitype.OpRefresh {
				continue
			}
			props := m.Diffs
			if len(props) == 0 {
				props = m.Keys
			}
			r.drifted = append(r.drifted, Drifted{URN: m.URN, Op: string(m.Op), Properties: props})
			var inputs map[string]any
			if m.New != nil {
				inputs = m.New.Inputs
			}
			line, err := json.Marshal(struct {
				Op     apitype.OpType
				URN    string
				Keys   []string
				Diffs  []string
				Inputs map[string]any
			}{m.Op, m.URN, m.Keys, m.Diffs, inputs})
			if err != nil {
				line = []byte(string(m.Op) + " " + m.URN)
			}
			r.lines = append(r.lines, string(line))
		}
	}()
	return r
}

// digest waits for the event stream to end; call it only after the
// operation returned without error.
func (r *stepRecorder) digest() string {
	<-r.done
	sort.Strings(r.lines)
	h := sha256.New()
	for _, l := range r.lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
