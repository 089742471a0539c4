package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/contract"
)

// Enqueue puts runs into their stacks' queues with signal-with-start, in
// the order given: a queue that does not exist yet starts with the first
// run that needs it. A queue ignores a run it already holds, so a retry
// after a partial success changes nothing.
func (a *Activities) Enqueue(ctx context.Context, in contract.EnqueueRequest) error {
	if a.Temporal == nil {
		return errors.New("enqueue: no Temporal client")
	}
	for _, e := range in.Entries {
		if err := a.checkQueueTaskQueue(ctx, e.Stack); err != nil {
			return err
		}
		_, err := a.Temporal.SignalWithStartWorkflow(ctx, contract.QueueID(e.Stack), contract.EnqueueSignal,
			contract.QueueEntry{RunID: e.RunID, Commit: e.Commit, Alone: e.Alone},
			client.StartWorkflowOptions{
				ID:                       contract.QueueID(e.Stack),
				TaskQueue:                a.Config.Temporal.TaskQueue,
				WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
				StaticSummary:            "Queue of stack " + e.Stack,
			},
			contract.StackQueueWorkflowName, contract.QueueState{Stack: e.Stack, ProbeEvery: a.QueueProbe})
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
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, contract.QueueID(stack), "")
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
		stack, contract.QueueID(stack), info.GetTaskQueue(), a.Config.Temporal.TaskQueue, info.GetTaskQueue(), contract.QueueID(stack)),
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

// QueueBehindInput names a stack's queue and the run that holds it.
type QueueBehindInput struct {
	Stack string
	RunID string
}

// QueueBehind lists the runs a batch led by the stack's holder may take
// (docs/batching.md): those waiting next that need this stack alone, in
// merge order, up to the first that does not, since a batch deploys its
// newest member's tree, which holds every commit before it. It is empty
// when RunID does not hold the stack.
func (a *Activities) QueueBehind(ctx context.Context, in QueueBehindInput) ([]contract.QueueEntry, error) {
	if a.Temporal == nil {
		return nil, errors.New("queue status: no Temporal client")
	}
	v, err := a.Temporal.QueryWorkflow(ctx, contract.QueueID(in.Stack), "", contract.QueueStatusQuery)
	if err != nil {
		return nil, fmt.Errorf("ask the queue of stack %s who waits: %w", in.Stack, err)
	}
	var st contract.QueueState
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("read the queue of stack %s: %w", in.Stack, err)
	}
	return Behind(st, in.RunID), nil
}

// Behind is QueueBehind's rule over a queue's state.
func Behind(st contract.QueueState, holder string) []contract.QueueEntry {
	if st.Holder == nil || st.Holder.RunID != holder {
		return nil
	}
	var out []contract.QueueEntry
	for _, w := range st.Waiting {
		if !w.Alone || len(out) == contract.MaxBehind {
			break
		}
		out = append(out, w)
	}
	return out
}

// BatchCheckInput names the run a `batched` signal says led the batch, and
// the waiting run that received it.
type BatchCheckInput struct {
	Leader string
	Commit string // the waiting run's commit
}

// ErrBatchUnconfirmed: the named leader does not say it deployed the
// commit; the waiting run refuses the signal and stays queued.
const ErrBatchUnconfirmed = "BatchUnconfirmed"

// CheckBatched asks the run a `batched` signal names for its own word on
// the waiting commit (docs/batching.md#followers-learn-from-the-leader):
// a signal can be sent by anyone who can reach the namespace, while the
// leader's status is what its history made it. The leader must be a
// Change run on this worker's task queue whose batch holds the commit and
// whose outcome for it is decided: for an unbisected batch its own
// success or no-op, or the batch's rejection or expiry; or the outcome
// bisection recorded for that commit.
// The answer is the leader's record, which the waiting run takes instead
// of the signal's.
func (a *Activities) CheckBatched(ctx context.Context, in BatchCheckInput) (contract.Batched, error) {
	if a.Temporal == nil {
		return contract.Batched{}, errors.New("check a batch: no Temporal client")
	}
	unconfirmed := func(format string, args ...any) (contract.Batched, error) {
		return contract.Batched{}, batchUnconfirmed(in.Leader, in.Commit, fmt.Sprintf(format, args...))
	}
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, in.Leader, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return unconfirmed("no such run")
	case err != nil:
		return contract.Batched{}, fmt.Errorf("describe run %s: %w", in.Leader, err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != contract.ChangeWorkflowName || info.GetTaskQueue() != a.Config.Temporal.TaskQueue {
		return unconfirmed("it is a %s on task queue %q, not a change run on %q",
			info.GetType().GetName(), info.GetTaskQueue(), a.Config.Temporal.TaskQueue)
	}
	v, err := a.Temporal.QueryWorkflow(ctx, in.Leader, "", contract.StatusQuery)
	if err != nil {
		return contract.Batched{}, fmt.Errorf("ask run %s for its status: %w", in.Leader, err)
	}
	var st struct {
		State string
		Batch *contract.Batched
	}
	if err := v.Get(&st); err != nil {
		return contract.Batched{}, fmt.Errorf("read the status of run %s: %w", in.Leader, err)
	}
	return LeaderOutcome(in.Leader, in.Commit, st.State, st.Batch)
}

// LeaderOutcome is CheckBatched's rule over a leader's status: the batch
// the leader recorded, with State, Failure and Revert its outcome for the
// commit.
func LeaderOutcome(leader, commit, state string, b *contract.Batched) (contract.Batched, error) {
	no := func(why string) (contract.Batched, error) {
		return contract.Batched{}, batchUnconfirmed(leader, commit, why)
	}
	switch {
	case b == nil || b.Leader != leader:
		return no("it leads no batch")
	case len(b.Members) < 2 || !slices.Contains(b.Members[1:], commit): // Members[0] is the leader's own commit
		return no("its batch does not hold that commit")
	}
	out := *b
	out.Outcomes = nil
	for _, o := range b.Outcomes {
		if o.Commit == commit {
			out.State, out.Failure, out.Revert, out.Bisected = o.State, o.Failure, o.Revert, true
			return out, nil
		}
	}
	// Unbisected, the leader's ending is each member's: deployed, or the
	// batch's decision (a rejection, or no decision in time).
	decided := (state == contract.StateRejected && b.Decision != nil && !b.Decision.Approve) ||
		(state == contract.StateExpired && b.Timeout > 0)
	if b.Bisected || (state != contract.StateSucceeded && state != contract.StateNoOp && !decided) {
		return no("it has not said how its batch ended for that commit")
	}
	out.State = state
	return out, nil
}

func batchUnconfirmed(leader, commit, why string) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("run %s does not confirm it deployed %s: %s", leader, contract.ShortSHA(commit), why), ErrBatchUnconfirmed, nil)
}
