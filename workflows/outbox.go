package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/internal/notify"
)

// outbox delivers a run's notifications in order, off the run's path: a
// slow or failing Slack never delays a plan, an apply or a verification.
// Runs started before the outbox existed keep their recorded shape (each
// notification awaited in line), chosen once per run by GetVersion.
type outbox struct {
	async   bool
	pending []notify.Event
	busy    bool
	// thread is where the run's messages went so far (the Slack parent
	// message and approval buttons), handed to each next delivery.
	thread notify.Thread
	// quiet drops what is sent from now on: a run with nothing to report
	// (a drift check that found none) stays out of the channel.
	quiet bool
	// localDrain: what is left when the run has nothing else to do goes
	// out by local activity (drain), once draining.
	localDrain, draining bool
}

func newOutbox(ctx workflow.Context) *outbox {
	o := &outbox{async: workflow.GetVersion(ctx, VersionAsyncNotifications, workflow.DefaultVersion, 1) == 1}
	if o.async {
		workflow.Go(ctx, o.loop)
	}
	return o
}

// send queues e (or, on the old shape, delivers it now).
func (o *outbox) send(ctx workflow.Context, e notify.Event) {
	if o.quiet {
		return
	}
	if !o.async {
		o.deliver(ctx, e)
		return
	}
	o.pending = append(o.pending, e)
}

func (o *outbox) loop(ctx workflow.Context) {
	for {
		if err := workflow.Await(ctx, func() bool { return len(o.pending) > 0 }); err != nil {
			return
		}
		e := o.pending[0]
		o.pending = o.pending[1:]
		o.busy = true
		o.deliver(ctx, e)
		o.busy = false
	}
}

// drain waits until every queued notification was delivered or given up
// on, so the run's last word goes out before it completes.
//
// With localDrain, what is left goes out by local activity (local.go):
// the run waits for it, and a scheduled activity would cost two more
// round trips through the server. A local activity holds back the
// commands of its workflow task until it is done (the SDK completes the
// task only then), and by now the run has none that matter to others:
// its stacks' queues acknowledged their release before draining began.
func (o *outbox) drain(ctx workflow.Context) {
	o.draining = o.localDrain
	_ = workflow.Await(ctx, func() bool { return len(o.pending) == 0 && !o.busy })
}

// deliver sends one of the run's notifications into its thread and keeps
// where the thread now stands.
func (o *outbox) deliver(ctx workflow.Context, e notify.Event) {
	e.Thread = o.thread
	if th, ok := deliverBy(ctx, e, o.draining); ok {
		o.thread = th
	}
}

// deliver sends one notification, retried a few times by its activity
// options; a failure is logged, never fatal. ok is false when it was not
// delivered.
func deliver(ctx workflow.Context, e notify.Event) (th notify.Thread, ok bool) {
	return deliverBy(ctx, e, false)
}

// deliverBy is deliver by a scheduled activity, or by a local activity
// with the same timeouts and retries.
func deliverBy(ctx workflow.Context, e notify.Event, local bool) (th notify.Thread, ok bool) {
	o := notifyOptions("Notify: " + e.Step)
	var f workflow.Future
	if local {
		f = workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions(o)), a.Notify, e)
	} else {
		f = workflow.ExecuteActivity(withOptions(ctx, o), a.Notify, e)
	}
	if err := f.Get(ctx, &th); err != nil {
		workflow.GetLogger(ctx).Warn("notification not delivered", "step", e.Step, "error", err)
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"kind": string(e.Kind)}).Counter(MetricNotificationFailures).Inc(1)
		return e.Thread, false
	}
	return th, true
}
