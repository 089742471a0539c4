package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/contract"
)

// Registry is where workflows are registered: a worker, a replayer or
// the test environment.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Register registers every workflow under its recorded name, each with the
// versioning behaviour it needs under Worker Deployments
// (docs/upgrading.md). A workflow type added without one fails the
// worker's start: the worker sets no default behaviour on purpose.
func (w Workflows) Register(r Registry) {
	// A change run is pinned to the build that started it. It plans,
	// waits hours for an approval of that plan, then applies, verifies
	// and rolls back: a build deployed meanwhile must change none of the
	// logic a run was planned and approved under, and the run never
	// replays through code it did not start on. Its build's workers run
	// until their pinned runs end (`changeops deployment describe`).
	r.RegisterWorkflowWithOptions(w.Change, workflow.RegisterOptions{
		Name: contract.ChangeWorkflowName, VersioningBehavior: workflow.VersioningBehaviorPinned,
	})
	// The watcher lives as long as its branch is tracked: pinned, it
	// would be stranded on the first build ever stopped. It moves to the
	// current build at its next task, so its history crosses builds by
	// design: every change to its shape stays behind workflow.GetVersion,
	// with a recorded history for the replay tests.
	r.RegisterWorkflowWithOptions(WatcherWorkflow, workflow.RegisterOptions{
		Name: contract.WatcherWorkflowName, VersioningBehavior: workflow.VersioningBehaviorAutoUpgrade,
	})
	// A stack's queue is as long-lived as the watcher and moves with it,
	// under the same GetVersion discipline. It serves runs of every
	// build at once (the old build's runs holding or leaving the stack,
	// the new build's waiting), through signals whose shapes all builds
	// share.
	r.RegisterWorkflowWithOptions(StackQueueWorkflow, workflow.RegisterOptions{
		Name: contract.StackQueueWorkflowName, VersioningBehavior: workflow.VersioningBehaviorAutoUpgrade,
	})
	// A drift run is pinned for the reasons a change run is: it shows what
	// drifted and what re-applying git would do, waits for a decision on
	// exactly that, and heals by the logic it was started with.
	r.RegisterWorkflowWithOptions(w.Drift, workflow.RegisterOptions{
		Name: contract.DriftWorkflowName, VersioningBehavior: workflow.VersioningBehaviorPinned,
	})
	// The freezes live as long as the deployment, like a queue: they move
	// to the current build, under the same GetVersion discipline, and
	// serve the runs of every build.
	r.RegisterWorkflowWithOptions(w.Freezes, workflow.RegisterOptions{
		Name: contract.FreezesWorkflowName, VersioningBehavior: workflow.VersioningBehaviorAutoUpgrade,
	})
	// A pull request's preview lives as long as the pull request, weeks
	// perhaps: it moves to the current build like the watcher, under the
	// same GetVersion discipline. What it decides nothing on: a preview
	// applies nothing.
	r.RegisterWorkflowWithOptions(PreviewWorkflow, workflow.RegisterOptions{
		Name: contract.PreviewWorkflowName, VersioningBehavior: workflow.VersioningBehaviorAutoUpgrade,
	})
}
