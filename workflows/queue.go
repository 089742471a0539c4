package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

const (
	// queueHistoryLimit continues the queue as new before its history
	// grows long; its whole state travels in contract.QueueState.
	queueHistoryLimit = 2000
	// maxSkipped bounds the skipped runs the queue remembers.
	maxSkipped = 20
	// defaultProbe applies when a queue was started without ProbeEvery.
	defaultProbe = time.Minute
)

// StackQueueWorkflow is a stack's queue (docs/runs.md, step 2): one entity
// workflow per stack, started by signal-with-start, that grants the stack to
// change runs one at a time, first in first out. Runs enter in merge order
// (the branch's watcher enqueues the runs it starts, in order), so a later
// commit, whose tree holds every earlier one, never deploys before them.
// The queue keeps the stack's last good state for rollbacks. A holder that
// ended without releasing (terminated, timed out) is noticed by a periodic
// check, skipped and reported.
func StackQueueWorkflow(ctx workflow.Context, st contract.QueueState) error {
	q := &stackQueue{st: st}
	if q.st.ProbeEvery <= 0 {
		q.st.ProbeEvery = defaultProbe
	}
	if err := workflow.SetQueryHandler(ctx, contract.QueueStatusQuery, func() (contract.QueueState, error) { return q.st, nil }); err != nil {
		return err
	}
	enq := workflow.GetSignalChannel(ctx, contract.EnqueueSignal)
	rel := workflow.GetSignalChannel(ctx, contract.ReleaseSignal)
	for {
		if ctx.Err() != nil {
			return temporal.NewCanceledError(fmt.Sprintf("queue of %s cancelled", q.st.Stack))
		}
		q.grant(ctx)
		info := workflow.GetInfo(ctx)
		if info.GetCurrentHistoryLength() > queueHistoryLimit || info.GetContinueAsNewSuggested() {
			// Take every signal already delivered so none is lost with
			// this run, then carry the state over.
			for q.takeSignals(ctx, enq, rel) {
			}
			return workflow.NewContinueAsNewError(ctx, StackQueueWorkflow, q.st)
		}
		q.describe(ctx)
		tctx, cancel := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(enq, func(c workflow.ReceiveChannel, _ bool) {
			var e contract.QueueEntry
			c.Receive(ctx, &e)
			q.enqueue(ctx, e)
		})
		sel.AddReceive(rel, func(c workflow.ReceiveChannel, _ bool) {
			var r contract.Release
			c.Receive(ctx, &r)
			q.release(ctx, r)
		})
		if q.st.Holder != nil {
			timer := workflow.NewTimerWithOptions(tctx, q.st.ProbeEvery, workflow.TimerOptions{Summary: "check holder " + q.st.Holder.RunID})
			sel.AddFuture(timer, func(f workflow.Future) {
				if f.Get(ctx, nil) == nil {
					q.probe(ctx)
				}
			})
		}
		sel.Select(ctx)
		cancel()
	}
}

type stackQueue struct {
	st contract.QueueState
}

// takeSignals applies one pending signal, if any, without blocking.
func (q *stackQueue) takeSignals(ctx workflow.Context, enq, rel workflow.ReceiveChannel) bool {
	var e contract.QueueEntry
	if enq.ReceiveAsync(&e) {
		q.enqueue(ctx, e)
		return true
	}
	var r contract.Release
	if rel.ReceiveAsync(&r) {
		q.release(ctx, r)
		return true
	}
	return false
}

func (q *stackQueue) enqueue(ctx workflow.Context, e contract.QueueEntry) {
	if q.st.Holder != nil && q.st.Holder.RunID == e.RunID {
		return
	}
	for _, w := range q.st.Waiting {
		if w.RunID == e.RunID {
			return // a retried enqueue keeps its place
		}
	}
	e.At = workflow.Now(ctx)
	q.st.Waiting = append(q.st.Waiting, e)
}

// release frees the stack (or drops a waiting run that left early).
func (q *stackQueue) release(ctx workflow.Context, r contract.Release) {
	if q.st.Holder != nil && q.st.Holder.RunID == r.RunID {
		if r.Deployed != nil {
			d := *r.Deployed
			d.At = workflow.Now(ctx)
			q.st.LastGood = &d
		}
		q.st.Holder = nil
		// The runs its batch deployed leave with it; each ends on the
		// holder's word (docs/batching.md).
		q.st.Waiting = slices.DeleteFunc(q.st.Waiting, func(w contract.QueueEntry) bool { return slices.Contains(r.Batched, w.RunID) })
		return
	}
	for i, w := range q.st.Waiting {
		if w.RunID == r.RunID {
			q.st.Waiting = append(q.st.Waiting[:i:i], q.st.Waiting[i+1:]...)
			return
		}
	}
}

// grant hands a free stack to the first waiting run that still runs.
func (q *stackQueue) grant(ctx workflow.Context) {
	for q.st.Holder == nil && len(q.st.Waiting) > 0 {
		next := q.st.Waiting[0]
		q.st.Waiting = q.st.Waiting[1:]
		err := workflow.SignalExternalWorkflow(ctx, next.RunID, "", contract.GrantSignal,
			contract.Grant{Stack: q.st.Stack, LastGood: q.st.LastGood}).Get(ctx, nil)
		if err != nil {
			q.skip(ctx, next, "it is no longer running: "+err.Error())
			continue
		}
		next.At = workflow.Now(ctx)
		q.st.Holder = &next
	}
}

// probe checks that the holder still runs; one that ended without
// releasing would block the stack forever.
func (q *stackQueue) probe(ctx workflow.Context) {
	h := q.st.Holder
	var open bool
	err := workflow.ExecuteActivity(withOptions(ctx, probeOptions("Is "+h.RunID+" running?")), a.RunOpen, h.RunID).Get(ctx, &open)
	if err != nil {
		workflow.GetLogger(ctx).Warn("check queue holder", "stack", q.st.Stack, "run", h.RunID, "error", err)
		return // checked again at the next probe
	}
	if !open && q.st.Holder == h {
		q.st.Holder = nil
		q.skip(ctx, *h, "it ended (terminated or timed out) without releasing the stack")
	}
}

func (q *stackQueue) skip(ctx workflow.Context, e contract.QueueEntry, why string) {
	msg := fmt.Sprintf("queue of %s moved past %s: %s", q.st.Stack, e.RunID, why)
	workflow.GetLogger(ctx).Warn(msg)
	q.st.Skipped = append(q.st.Skipped, msg)
	if len(q.st.Skipped) > maxSkipped {
		q.st.Skipped = q.st.Skipped[len(q.st.Skipped)-maxSkipped:]
	}
	deliver(ctx, notify.Event{
		Kind:   notify.KindQueue,
		RunID:  e.RunID,
		Commit: e.Commit,
		Stacks: []string{q.st.Stack},
		State:  "queue-skipped",
		Step:   "queue moved on",
		Detail: msg,
	})
}

func (q *stackQueue) describe(ctx workflow.Context) {
	switch {
	case q.st.Holder != nil:
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Held by %s; %d waiting", q.st.Holder.RunID, len(q.st.Waiting)))
	default:
		workflow.SetCurrentDetails(ctx, "Free")
	}
}

// probeOptions: a quick question to the server, retried a few times.
func probeOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	}
}
