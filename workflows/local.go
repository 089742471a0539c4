package workflows

import (
	"go.temporal.io/sdk/workflow"
)

// Local steps. A scheduled activity costs a change run two round trips
// through the server besides its own work: the server hands the task to
// an activity worker, and hands the result back in a new workflow task.
// Inspect, Effective and Window do tens of milliseconds of work each, on
// the run's path, so those round trips were most of their time. They run
// as local activities instead: in the worker running the run's workflow
// task, their results recorded in the history as markers
// (docs/design.md#local-steps).
//
// The SDK's rules for a local activity, and why these three meet them:
// it should be short (a workflow task waits for it; one longer than the
// workflow task timeout makes the SDK extend the task, so a slow fetch
// still finishes, at the cost of a few events); it cannot heartbeat (a
// worker that dies is noticed by the workflow task timeout, 10 s, sooner
// than by the 30 s heartbeat timeout Effective had); it may run more than
// once (a workflow task that fails runs it again): all three only read
// git and the configuration, and Window's registration with the freezes
// workflow is keyed by run. Each keeps its timeouts and retry policy
// (localOptions); a retry after a long backoff waits on a timer.
//
// The Pulumi steps, Revert and the notifications stay scheduled
// activities: they run for seconds to hours and heartbeat, or (Notify)
// must not hold up the run's next step while Slack answers, except the
// last ones (outbox.drain).

// localSteps chooses the run's shape once: runs started before local
// steps keep their scheduled activities on replay.
func (r *run) localSteps(ctx workflow.Context) {
	r.local = workflow.GetVersion(ctx, VersionLocalSteps, workflow.DefaultVersion, 1) == 1
	r.out.localDrain = r.local
}

// short runs one of the run's short steps: a local activity on a run
// with local steps, else the scheduled activity it was.
func (r *run) short(ctx workflow.Context, o workflow.ActivityOptions, activity, arg any) workflow.Future {
	if r.local {
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions(o)), activity, arg)
	}
	return workflow.ExecuteActivity(withOptions(ctx, o), activity, arg)
}

// localOptions are a scheduled activity's options for the same step as a
// local activity: the same timeouts and retry policy. A heartbeat timeout
// has no counterpart: the workflow task timeout bounds a dead worker.
func localOptions(o workflow.ActivityOptions) workflow.LocalActivityOptions {
	return workflow.LocalActivityOptions{
		Summary:                o.Summary,
		StartToCloseTimeout:    o.StartToCloseTimeout,
		ScheduleToCloseTimeout: o.ScheduleToCloseTimeout,
		RetryPolicy:            o.RetryPolicy,
	}
}
