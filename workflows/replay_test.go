package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (tests/, with CHANGEOPS_RECORD_HISTORIES=1) against today's workflow code.
// A change that breaks determinism for runs already in flight fails here;
// such a change needs workflow.GetVersion, not a re-recording.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 16 {
		t.Fatalf("found %d recorded histories in testdata, want each shape of the change run, the watcher, a stack queue and a drift run, before and after each versioned change", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			// Validators do not run in replay: no gate is needed.
			Workflows{}.Register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
