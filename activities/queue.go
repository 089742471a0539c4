package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Names of the per-stack queue (docs/runs.md, step 2). They live here, beside
// the activity that starts queues, because workflows imports this package.
const (
	QueueWorkflowName = "StackQueueWorkflow"
	// EnqueueSignal puts a run in a stack's queue (a QueueEntry).
	EnqueueSignal = "enqueue"
	// ReleaseSignal gives the stack back (a Release).
	ReleaseSignal = "release"
	// GrantSignal tells a run it holds a stack (a Grant).
	GrantSignal = "grant"
	// QueueStatusQuery returns the queue's QueueState.
	QueueStatusQuery = "queue-status"
)

// QueueID is the one queue a stack has.
func QueueID(stack string) string { return "queue/" + stack }

// QueueEntry is a run waiting for, or holding, a stack.
type QueueEntry struct {
	RunID  string
	Commit string
	At     time.Time // when it entered the queue, or was granted the stack
}

// Deployed is a state of a stack that a run applied and verified: the
// effective tree of Commit (its tree minus Undone).
type Deployed struct {
	Commit string
	Undone []string
	RunID  string
	At     time.Time
}

// Grant tells a run it holds Stack, and what the stack last held that was
// good, for a rollback.
type Grant struct {
	Stack    string
	LastGood *Deployed
}

// Release gives a stack back; Deployed is set when the run succeeded and
// the stack now holds a new good state.
type Release struct {
	RunID    string
	Deployed *Deployed
}

// QueueState is the queue's whole state, carried across continue-as-new
// and returned by QueueStatusQuery.
type QueueState struct {
	Stack    string
	Holder   *QueueEntry
	Waiting  []QueueEntry // FIFO: merge order
	LastGood *Deployed
	// ProbeEvery is how often the queue checks that its holder still runs.
	ProbeEvery time.Duration
	// Skipped reports the latest runs the queue moved past because they had
	// ended without giving the stack back (newest last, bounded).
	Skipped []string
}

// EnqueueRequest asks for places in stacks' queues, in order.
type EnqueueRequest struct {
	Entries []QueueRequest
}

// QueueRequest is one run entering one stack's queue.
type QueueRequest struct {
	Stack  string
	RunID  string
	Commit string
}

// Enqueue puts runs into their stacks' queues with signal-with-start, in
// the order given: a queue that does not exist yet starts with the first
// run that needs it. A queue ignores a run it already holds, so a retry
// after a partial success changes nothing.
func (a *Activities) Enqueue(ctx context.Context, in EnqueueRequest) error {
	if a.Temporal == nil {
		return errors.New("enqueue: no Temporal client")
	}
	for _, e := range in.Entries {
		if err := a.checkQueueTaskQueue(ctx, e.Stack); err != nil {
			return err
		}
		_, err := a.Temporal.SignalWithStartWorkflow(ctx, QueueID(e.Stack), EnqueueSignal,
			QueueEntry{RunID: e.RunID, Commit: e.Commit},
			client.StartWorkflowOptions{
				ID:                       QueueID(e.Stack),
				TaskQueue:                a.Config.Temporal.TaskQueue,
				WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
				StaticSummary:            "Queue of stack " + e.Stack,
			},
			QueueWorkflowName, QueueState{Stack: e.Stack, ProbeEvery: a.QueueProbe})
		if err != nil {
			return fmt.Errorf("enqueue %s for stack %s: %w", e.RunID, e.Stack, err)
		}
	}
	return nil
}

// checkQueueTaskQueue refuses a running queue that lives on another task
// queue (temporal.task_queue changed, or two deployments share stack names
// in one namespace): no worker here would ever run it, and runs would wait
// for a grant forever.
func (a *Activities) checkQueueTaskQueue(ctx context.Context, stack string) error {
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, QueueID(stack), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("describe the queue of stack %s: %w", stack, err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetTaskQueue() == a.Config.Temporal.TaskQueue {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"the queue of stack %s (%s) runs on task queue %q, this worker serves %q: run a worker on %q, "+
			"or terminate %s so that a new one starts here (the stack's last good state is then looked up in visibility)",
		stack, QueueID(stack), info.GetTaskQueue(), a.Config.Temporal.TaskQueue, info.GetTaskQueue(), QueueID(stack)),
		ErrStackInvalid, nil)
}

// RunOpen says whether a workflow is still running: the queue's check that
// its holder has not been terminated or timed out without releasing.
func (a *Activities) RunOpen(ctx context.Context, id string) (bool, error) {
	if a.Temporal == nil {
		return false, errors.New("describe run: no Temporal client")
	}
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe run %s: %w", id, err)
	}
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}
