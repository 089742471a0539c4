package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
)

// Activity options, one function per kind of call, so each call site says
// what it is running with.

func withOptions(ctx workflow.Context, o workflow.ActivityOptions) workflow.Context {
	return workflow.WithActivityOptions(ctx, o)
}

// gitOptions: fetches are retried through remote outages for a while; a
// commit that does not exist or a stack folder that is missing are not.
func gitOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        20,
			NonRetryableErrorTypes: []string{activities.ErrCommitNotFound, activities.ErrStackInvalid},
		},
	}
}

// revertOptions: git's retries, and a heartbeat timeout, so that a worker
// that dies after pushing is noticed quickly; the retry finds its revert.
func revertOptions(summary string) workflow.ActivityOptions {
	o := gitOptions(summary)
	o.HeartbeatTimeout = 30 * time.Second
	return o
}

// effectiveOptions: git's retries, and a heartbeat timeout: subtracting
// reverted changes merges files line by line, which takes a while on large
// generated files; the activity heartbeats meanwhile, so a dead worker is
// noticed within the timeout and a cancelled run stops the merge.
func effectiveOptions(summary string) workflow.ActivityOptions {
	o := gitOptions(summary)
	o.HeartbeatTimeout = 30 * time.Second
	return o
}

// pulumiOptions: previews and ups heartbeat; a worker that dies is noticed
// within the heartbeat timeout and the call runs again elsewhere. The
// activities bound their own retries by the stack's settings (a stack
// locked by someone else for lock_wait, other failures for
// apply_retry_for) and stop them with a non-retryable error that says
// so; the schedule-to-close timeout only backs that up.
func pulumiOptions(summary string, timeout time.Duration, s config.Stack) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:                summary,
		StartToCloseTimeout:    timeout,
		ScheduleToCloseTimeout: timeout + s.RetryFor() + s.LockWaitFor() + 10*time.Minute,
		HeartbeatTimeout:       time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        2 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrPulumiProgram, activities.ErrStackInvalid, activities.ErrCommitNotFound},
		},
	}
}

func verifyOptions(summary string) workflow.ActivityOptions {
	o := pulumiOptions(summary, 15*time.Minute, config.Stack{})
	o.ScheduleToCloseTimeout = 0
	o.RetryPolicy.MaximumAttempts = 10
	o.HeartbeatTimeout = 2 * time.Minute // one check may take a minute between heartbeats
	return o
}

// notifyOptions: a few tries, waiting as long as a rate limit asks (the
// activity sets the next delay), bounded in all so that an outage of the
// chat service never holds a run's ending for long.
func notifyOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:                summary,
		StartToCloseTimeout:    15 * time.Second,
		ScheduleToCloseTimeout: 3 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    5,
		},
	}
}

// checkBatchedOptions: asking a batch's leader may meet a busy or
// restarting worker; a refusal to confirm is final, anything else is
// retried for minutes, since a member that refuses a real signal leaves
// the queue with the leader's release and must ask for its place again.
func checkBatchedOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:                summary,
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{activities.ErrBatchUnconfirmed},
		},
	}
}
