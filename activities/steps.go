package activities

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/sig"

	"github.com/changeops/changeops/internal/policy"
)

// stepRecorder digests the steps a preview announces. Two previews that
// would do the same thing to the same resources with the same inputs have
// the same digest; progress text, timings and resources left alone do not
// count.
type stepRecorder struct {
	lines []string
	// drifted lists the resources with a step, in the engine's order;
	// read it after record returned.
	drifted []Drifted
	// steps are the steps as policies read them (policy.Input.Steps).
	steps []policy.Step
}

func recordSteps() *stepRecorder { return &stepRecorder{} }

// record runs op, an engine operation given the option that streams its
// events here, and records the steps they announce. Recording ends when op
// returns. The Automation API closes the stream's channel only once the
// CLI has opened the stream: an operation that fails before (a program
// server or log tailer that does not start, a CLI that exits early) would
// otherwise leave the reader waiting for ever, one more on every retry.
// Nothing is lost by stopping there: Preview returns only after its
// stream has ended, and each event is handed over before the next is sent.
func (r *stepRecorder) record(op func(stream optpreview.Option) error) error {
	ch := make(chan events.EngineEvent)
	returned, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e, ok := <-ch:
				if !ok {
					return
				}
				r.add(e)
			case <-returned:
				return
			}
		}
	}()
	defer func() {
		close(returned)
		<-done
	}()
	return op(optpreview.EventStreams(ch))
}

// add records the step an event announces, if any.
func (r *stepRecorder) add(e events.EngineEvent) {
	if e.ResourcePreEvent == nil {
		return
	}
	m := e.ResourcePreEvent.Metadata
	// A refresh step only reads what is live; what it found shows in the
	// steps that follow it.
	if m.Op == apitype.OpSame || m.Op == apitype.OpRead || m.Op == apitype.OpRefresh {
		return
	}
	props := m.Diffs
	if len(props) == 0 {
		props = m.Keys
	}
	r.drifted = append(r.drifted, Drifted{URN: m.URN, Op: string(m.Op), Properties: props})
	var inputs, old map[string]any
	if m.New != nil {
		inputs = m.New.Inputs
	}
	if m.Old != nil {
		old = m.Old.Inputs
	}
	var replaceKeys []string
	if m.Op == apitype.OpReplace || m.Op == apitype.OpCreateReplacement || m.Op == apitype.OpDeleteReplaced {
		replaceKeys = m.Keys
	}
	r.steps = append(r.steps, policy.Step{Op: string(m.Op), URN: m.URN, Type: m.Type, Provider: m.Provider,
		Old: maskSecrets(old), New: maskSecrets(inputs), ChangedKeys: nonNil(m.Diffs), ReplaceKeys: nonNil(replaceKeys)})
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

// maskSecrets is inputs for policies: a secret value, which the engine's
// events carry as its secret signature around the masked ciphertext
// ({"4dabf…": "1b470…", "ciphertext": "[secret]"}), becomes the string
// "[secret]", so a policy reads a secret as the engine displays it and a
// string builtin applied to it does not fail. Nothing else is changed.
func maskSecrets(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = maskValue(v)
	}
	return out
}

func maskValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v[sig.Key] == sig.Secret {
			return "[secret]"
		}
		return maskSecrets(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = maskValue(e)
		}
		return out
	}
	return v
}

// nonNil keeps a list a list in the input document (never null).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// digest sums the steps recorded; call it only after record returned
// without error.
func (r *stepRecorder) digest() string {
	sort.Strings(r.lines)
	h := sha256.New()
	for _, l := range r.lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
