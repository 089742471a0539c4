package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// queueAskEvery is how often a run waiting for its stacks asks again for
// its places in their queues.
const queueAskEvery = 5 * time.Minute

// acquire enters the run's stacks' queues, waits until every one is granted
// (docs/runs.md, step 2), then works out the effective tree. ok is false when
// the run ends here.
func (r *run) acquire(ctx workflow.Context) (ChangeResult, bool) {
	r.queued = true
	r.lastGood = map[string]*contract.Deployed{}
	r.enter(ctx, contract.StateQueued, fmt.Sprintf("Waiting for %s", strings.Join(r.st.Stacks, ", ")))

	// The watcher entered the runs it started, in merge order. A run it
	// did not start asks it to, so that one writer orders every queue of
	// the branch and no two queues order two runs differently (which
	// could deadlock runs that need both). With no watcher running, the
	// run enters the queues itself.
	var missing []contract.QueueRequest
	for _, name := range r.st.Stacks { // sorted: Inspect sorts stacks by name
		if !slices.Contains(r.in.Enqueued, name) {
			missing = append(missing, contract.QueueRequest{Stack: name, RunID: r.st.ID, Commit: r.in.Commit, Alone: len(r.st.Stacks) == 1})
		}
	}
	if len(missing) > 0 {
		if err := r.askForPlaces(ctx, missing); err != nil {
			return r.fail(ctx, "enter the stack queues", err), false
		}
	}

	// A request can be lost (a watcher whose enqueue was refused, or one
	// that continued as new before serving it), and a run in no queue is
	// never granted: the run asks again every queueAskEvery while it
	// waits. Queues key entries by run, so asking again never adds a run
	// twice or moves it back. Runs that started waiting before this
	// existed keep their recorded shape.
	askAgain := workflow.GetVersion(ctx, VersionAskQueuesAgain, workflow.DefaultVersion, 1) == 1
	grants := workflow.GetSignalChannel(ctx, contract.GrantSignal)
	batchedBy := workflow.GetSignalChannel(ctx, contract.BatchedSignal)
	for len(r.st.Held) < len(r.st.Stacks) {
		var g contract.Grant
		var b *contract.Batched
		if !r.nextGrant(ctx, grants, batchedBy, askAgain, &g, &b) {
			return r.finish(ctx, contract.StateFailed, "cancelled while queued"), false
		}
		if b != nil {
			if res, ok := r.batched(ctx, *b); ok {
				return res, false
			}
			continue // refused: still queued
		}
		switch {
		case !slices.Contains(r.st.Stacks, g.Stack):
			// Enqueued for a stack the commit no longer maps to (the
			// configuration changed): give it straight back.
			r.releaseQueue(ctx, g.Stack, nil)
			continue
		case slices.Contains(r.st.Held, g.Stack):
			continue
		}
		r.st.Held = append(r.st.Held, g.Stack)
		r.lastGood[g.Stack] = g.LastGood
		if len(r.st.Held) < len(r.st.Stacks) {
			r.detail(ctx, fmt.Sprintf("Holding %s; waiting for the rest of %s", strings.Join(r.st.Held, ", "), strings.Join(r.st.Stacks, ", ")))
		}
	}
	slices.Sort(r.st.Held)
	r.st.BatchPending = nil // a batch that asked for it was dropped

	// The effective tree: the commit's tree minus what reverts on the
	// branch have undone while the run waited.
	short := contract.ShortSHA(r.in.Commit)
	var eff activities.EffectiveResult
	err := r.short(ctx, effectiveOptions("Effective tree of "+short), a.Effective,
		activities.EffectiveInput{Repo: r.in.Repo, Branch: r.in.Branch, Commit: r.in.Commit}).Get(ctx, &eff)
	if err != nil {
		return r.fail(ctx, "effective tree of "+short, err), false
	}
	if eff.DependsOn != "" {
		return r.finish(ctx, contract.StateFailed, fmt.Sprintf(
			"%s builds on %s, which was reverted: undoing %s conflicts in %s, and deploying %s as it is would bring the reverted change back. "+
				"Nothing was deployed; rework the commit on the branch so it no longer depends on %s",
			short, contract.ShortSHA(eff.DependsOn), contract.ShortSHA(eff.DependsOn), strings.Join(eff.Conflicts, ", "), short, contract.ShortSHA(eff.DependsOn))), false
	}
	r.st.Undone = eff.Undone
	if len(eff.Undone) > 0 {
		shorts := make([]string, len(eff.Undone))
		for i, u := range eff.Undone {
			shorts[i] = contract.ShortSHA(u)
		}
		r.notify(ctx, notify.Event{Step: "effective tree", Detail: fmt.Sprintf("deploying %s without %s, reverted since", short, strings.Join(shorts, ", "))})
	}
	return ChangeResult{}, true
}

// askForPlaces asks the branch's watcher to put the run into queues, or,
// with no watcher running, enters them itself.
func (r *run) askForPlaces(ctx workflow.Context, entries []contract.QueueRequest) error {
	req := contract.EnqueueRequest{Entries: entries}
	err := workflow.SignalExternalWorkflow(ctx, contract.WatcherID(r.in.Repo, r.in.Branch), "", contract.EnqueueRunSignal, req).Get(ctx, nil)
	if err != nil {
		err = workflow.ExecuteActivity(withOptions(ctx, gitOptions("Enter the queues of "+strings.Join(r.st.Stacks, ", "))),
			a.Enqueue, req).Get(ctx, nil)
	}
	return err
}

// nextGrant receives the next grant, or a batch's word that it deployed
// the run's commit (b is set; batch.go). With askAgain, it asks for the
// places of the stacks not yet held every queueAskEvery until either
// arrives. It is false when the run was cancelled while it waited.
func (r *run) nextGrant(ctx workflow.Context, grants, batchedBy workflow.ReceiveChannel, askAgain bool, g *contract.Grant, b **contract.Batched) bool {
	if !askAgain {
		return grants.Receive(ctx, g) // runs from before batches
	}
	for {
		// A batch tells its members before it gives the stack back, so
		// its word comes before any grant that follows.
		var got contract.Batched
		if batchedBy.ReceiveAsync(&got) {
			*b = &got
			return true
		}
		if grants.ReceiveAsync(g) {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		tctx, cancel := workflow.WithCancel(ctx)
		asked := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(grants, func(workflow.ReceiveChannel, bool) {})    // taken above
		sel.AddReceive(batchedBy, func(workflow.ReceiveChannel, bool) {}) // taken above
		sel.AddFuture(workflow.NewTimerWithOptions(tctx, queueAskEvery, workflow.TimerOptions{Summary: "ask the queues again"}),
			func(f workflow.Future) { asked = f.Get(ctx, nil) == nil })
		sel.Select(ctx)
		cancel()
		if !asked {
			continue
		}
		var again []contract.QueueRequest
		for _, name := range r.st.Stacks {
			if !slices.Contains(r.st.Held, name) {
				again = append(again, contract.QueueRequest{Stack: name, RunID: r.st.ID, Commit: r.in.Commit, Alone: len(r.st.Stacks) == 1})
			}
		}
		if err := r.askForPlaces(ctx, again); err != nil {
			// Maybe still queued; asked again at the next interval.
			workflow.GetLogger(ctx).Warn("ask again for places in the stack queues", "run", r.st.ID, "error", err)
		}
	}
}

// releaseQueues gives every stack back (or leaves the queues the run still
// waits in). A succeeded run tells each queue its new last good state. It
// runs whatever the ending, in a context a cancellation does not stop.
func (r *run) releaseQueues(ctx workflow.Context, res ChangeResult) {
	if !r.queued {
		return
	}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	var good *contract.Deployed
	if res.State == contract.StateSucceeded {
		good = &contract.Deployed{Commit: r.commit(), Undone: r.st.Undone, RunID: r.st.ID}
	}
	var batched []string // the members endBatch or bisect told: they leave the queue
	switch {
	case r.batch != nil && r.batch.bisected:
		good, batched = r.batch.good, r.batch.told
	case r.batch != nil:
		batched = r.batch.told // deployed, or decided with the batch
	}
	names := slices.Clone(r.st.Stacks)
	for _, name := range r.in.Enqueued {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		if slices.Contains(r.st.Held, name) {
			r.releaseQueue(ctx, name, good, batched...)
		} else {
			r.releaseQueue(ctx, name, nil) // only a stack it deployed has a new good state
		}
	}
}

func (r *run) releaseQueue(ctx workflow.Context, stack string, good *contract.Deployed, batched ...string) {
	err := workflow.SignalExternalWorkflow(ctx, contract.QueueID(stack), "", contract.ReleaseSignal,
		contract.Release{RunID: r.st.ID, Deployed: good, Batched: batched}).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("release stack queue", "stack", stack, "error", err)
	}
}
