package workflows

import (
	"testing"

	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/contract"
)

// recorder is a Registry that keeps what was registered.
type recorder map[string]workflow.VersioningBehavior

func (r recorder) RegisterWorkflowWithOptions(_ any, o workflow.RegisterOptions) {
	r[o.Name] = o.VersioningBehavior
}

// Runs that wait for a person are pinned to their build; the long-lived
// workflows follow the current build. Every type declares one: the worker
// sets no default.
func TestEveryWorkflowDeclaresItsVersioningBehaviour(t *testing.T) {
	t.Parallel()
	got := recorder{}
	Workflows{}.Register(got)
	want := map[string]workflow.VersioningBehavior{
		contract.ChangeWorkflowName:     workflow.VersioningBehaviorPinned,
		contract.DriftWorkflowName:      workflow.VersioningBehaviorPinned,
		contract.WatcherWorkflowName:    workflow.VersioningBehaviorAutoUpgrade,
		contract.StackQueueWorkflowName: workflow.VersioningBehaviorAutoUpgrade,
		contract.FreezesWorkflowName:    workflow.VersioningBehaviorAutoUpgrade,
		contract.PreviewWorkflowName:    workflow.VersioningBehaviorAutoUpgrade,
	}
	if len(got) != len(want) {
		t.Errorf("registered %v, want %v", got, want)
	}
	for name, b := range want {
		if got[name] != b {
			t.Errorf("%s registered with versioning behaviour %v, want %v", name, got[name], b)
		}
	}
}
