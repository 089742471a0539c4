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
func (o *outbox) drain(ctx workflow.Context) {
	_ = workflow.Await(ctx, func() bool { return len(o.pending) == 0 && !o.busy })
}

// deliver sends one of the run's notifications into its thread and keeps
// where the thread now stands.
func (o *outbox) deliver(ctx workflow.Context, e notify.Event) {
	e.Thread = o.thread
	if th, ok := deliver(ctx, e); ok {
		o.thread = th
	}
}

// deliver sends one notification, retried a few times by its activity
// options; a failure is logged, never fatal. ok is false when it was not
// delivered.
func deliver(ctx workflow.Context, e notify.Event) (th notify.Thread, ok bool) {
	if err := workflow.ExecuteActivity(withOptions(ctx, notifyOptions("Notify: "+e.Step)), a.Notify, e).Get(ctx, &th); err != nil {
		workflow.GetLogger(ctx).Warn("notification not delivered", "step", e.Step, "error", err)
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"kind": string(e.Kind)}).Counter(MetricNotificationFailures).Inc(1)
		return e.Thread, false
	}
	return th, true
}
