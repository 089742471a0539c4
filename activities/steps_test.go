package activities

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

func step(op apitype.OpType, urn string) events.EngineEvent {
	return events.EngineEvent{EngineEvent: apitype.EngineEvent{ResourcePreEvent: &apitype.ResourcePreEvent{
		Metadata: apitype.StepEventMetadata{Op: op, URN: urn, Diffs: []string{"content"}},
	}}}
}

// streamOf is the channel the Automation API would write events to.
func streamOf(o optpreview.Option) chan<- events.EngineEvent {
	var opts optpreview.Options
	o.ApplyOption(&opts)
	return opts.EventStreams[0]
}

// The recorder ends whenever the operation returns, also when the engine
// never opened (or never closed) the event stream: a preview failing early
// on every retry must not leave a reader behind each time. Not parallel: it
// counts goroutines.
func TestRecordEndsWhenTheOperationReturns(t *testing.T) {
	failed := errors.New("preview failed")
	cases := []struct {
		name string
		op   func(optpreview.Option) error
		want error
	}{
		{"fails before the stream opens", func(optpreview.Option) error { return failed }, failed},
		{"stream cut short", func(o optpreview.Option) error {
			streamOf(o) <- step(apitype.OpUpdate, "urn:a")
			return failed
		}, failed},
		{"stream ends", func(o optpreview.Option) error {
			ch := streamOf(o)
			ch <- step(apitype.OpUpdate, "urn:a")
			close(ch)
			return nil
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const runs = 50
			before := runtime.NumGoroutine()
			for range runs {
				if err := recordSteps().record(c.op); !errors.Is(err, c.want) {
					t.Fatalf("record = %v, want %v", err, c.want)
				}
			}
			// A goroutine that closed done may still be on its way out.
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() >= before+runs/2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n >= before+runs/2 {
				t.Fatalf("%d goroutines after %d operations, %d before: the recorders outlived them", n, runs, before)
			}
		})
	}
}

// Every step announced before the operation returned counts, in any order;
// steps that change nothing do not.
func TestRecordDigestsTheSteps(t *testing.T) {
	t.Parallel()
	digest := func(evs ...events.EngineEvent) (*stepRecorder, string) {
		r := recordSteps()
		err := r.record(func(o optpreview.Option) error {
			ch := streamOf(o)
			for _, e := range evs {
				ch <- e
			}
			close(ch)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return r, r.digest()
	}
	r, d1 := digest(step(apitype.OpUpdate, "urn:a"), step(apitype.OpSame, "urn:b"), step(apitype.OpCreate, "urn:c"))
	_, d2 := digest(step(apitype.OpCreate, "urn:c"), step(apitype.OpUpdate, "urn:a"))
	_, d3 := digest(step(apitype.OpUpdate, "urn:a"))
	if d1 != d2 {
		t.Errorf("the same steps in another order digest differently")
	}
	if d1 == d3 {
		t.Errorf("different steps digest the same")
	}
	if len(r.drifted) != 2 || r.drifted[0].URN != "urn:a" || r.drifted[1].URN != "urn:c" {
		t.Errorf("drifted = %+v, want urn:a then urn:c", r.drifted)
	}
}

// Policies read a secret as the engine displays it: the events' secret
// signature around the masked ciphertext becomes "[secret]", in nested
// values too; the rest of the inputs is left as it is.
func TestStepsMaskSecretsForPolicies(t *testing.T) {
	t.Parallel()
	masked := map[string]any{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "[secret]"}
	r := recordSteps()
	r.add(events.EngineEvent{EngineEvent: apitype.EngineEvent{ResourcePreEvent: &apitype.ResourcePreEvent{
		Metadata: apitype.StepEventMetadata{Op: apitype.OpReplace, URN: "urn:a", Type: "t:index:R", Keys: []string{"name"}, Diffs: []string{"name", "token"},
			Old: &apitype.StepEventStateMetadata{Inputs: map[string]any{"name": "a", "token": masked}},
			New: &apitype.StepEventStateMetadata{Inputs: map[string]any{"name": "b", "token": masked,
				"env": []any{map[string]any{"value": masked}}, "size": 3.0}}},
	}}})
	if len(r.steps) != 1 {
		t.Fatalf("steps = %+v", r.steps)
	}
	s := r.steps[0]
	got := fmt.Sprintln(s.Op, s.Old, s.New, s.ChangedKeys, s.ReplaceKeys)
	want := "replace map[name:a token:[secret]] map[env:[map[value:[secret]]] name:b size:3 token:[secret]] [name token] [name]\n"
	if got != want {
		t.Fatalf("step = %s\nwant   %s", got, want)
	}
}
