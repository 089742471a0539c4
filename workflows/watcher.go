package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// pollsPerRun bounds the watcher's history: after this many polls it
// continues as new with the last seen commit.
const pollsPerRun = 500

// WatcherWorkflow polls a branch and starts one ChangeWorkflow per new
// first-parent commit, oldest first. A poke signal (webhook) polls at once;
// the watcher still decides what is new, so a lost or repeated webhook costs
// at most one interval and never a change. A force push that drops seen
// commits is reported and, by default, held until a person acknowledges it.
func WatcherWorkflow(ctx workflow.Context, in WatcherInput) error {
	w := &watcher{in: in, st: WatcherStatus{Branch: in.Branch, LastSeen: in.LastSeen, Held: in.Held, Outage: in.Outage}}
	if err := w.setup(ctx); err != nil {
		return err
	}
	pokes := workflow.GetSignalChannel(ctx, contract.PokeSignal)
	w.requests = workflow.GetSignalChannel(ctx, contract.EnqueueRunSignal)
	interval := 30 * time.Second
	for i := 0; i < pollsPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); i++ {
		w.enqueueRequested(ctx)
		if w.st.Held != nil {
			w.waitForAck(ctx)
			continue
		}
		res, backlog := w.poll(ctx)
		if res.PollInterval > 0 {
			interval = res.PollInterval
		}
		if backlog {
			continue // a long backlog: keep going without waiting
		}
		waitForPoll(ctx, pokes, w.requests, interval)
	}
	w.enqueueRequested(ctx)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	// Requests that arrived while the last enqueue or a handler ran are
	// still in the channel, and the SDK only logs unread signals when a run
	// continues as new: carry them to the next run, which serves them first.
	// Nothing yields between here and continuing, and a signal that arrives
	// during this task makes the server refuse the continue-as-new and
	// deliver the signal in a new task, so no request falls in between.
	return workflow.NewContinueAsNewError(ctx, WatcherWorkflow, WatcherInput{
		Repo: in.Repo, Branch: in.Branch, LastSeen: w.st.LastSeen, UIURL: in.UIURL, Held: w.st.Held, Outage: w.st.Outage,
		Pending: w.takeRequests(),
	})
}

type watcher struct {
	in WatcherInput
	st WatcherStatus
	// requests carries EnqueueRunSignal: runs this watcher did not start
	// asking for their places in the queues.
	requests workflow.ReceiveChannel
}

// takeRequests takes the requests carried over from the previous run and
// every request waiting in the channel, without blocking.
func (w *watcher) takeRequests() []contract.QueueRequest {
	entries := w.in.Pending
	w.in.Pending = nil
	var req contract.EnqueueRequest
	for w.requests.ReceiveAsync(&req) {
		entries = append(entries, req.Entries...)
	}
	return entries
}

func (w *watcher) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, contract.WatcherStatusQuery, func() (WatcherStatus, error) { return w.st, nil }); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, contract.AckRewriteUpdate,
		func(ctx workflow.Context, req AckRequest) (WatcherStatus, error) {
			held := w.st.Held
			// Resume after the head seen with the rewrite: nothing from the
			// rewritten part is deployed, later commits are.
			w.st.LastSeen, w.st.Held = held.Head, nil
			w.notify(ctx, "rewrite acknowledged", held.Head,
				fmt.Sprintf("acknowledged by %s; deploying commits after %s", req.User, contract.ShortSHA(held.Head)))
			return w.st, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req AckRequest) error {
			switch {
			case req.User == "":
				return errors.New("an acknowledgement needs a user: pass --as USER")
			case w.st.Held == nil:
				return fmt.Errorf("branch %s has no rewrite waiting for acknowledgement", w.in.Branch)
			}
			return nil
		}})
}

// poll fetches once and starts the runs of new commits. backlog says more
// commits are waiting than one poll returns.
func (w *watcher) poll(ctx workflow.Context) (activities.PollResult, bool) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Watching %s; last seen %s", w.in.Branch, contract.ShortSHA(w.st.LastSeen)))
	var res activities.PollResult
	err := workflow.ExecuteActivity(withOptions(ctx, pollOptions("Poll "+w.in.Branch)),
		a.PollBranch, activities.PollInput{Repo: w.in.Repo, Branch: w.in.Branch, LastSeen: w.st.LastSeen}).Get(ctx, &res)
	w.st.LastPoll = workflow.Now(ctx)
	if err != nil {
		workflow.GetLogger(ctx).Warn("poll failed", "branch", w.in.Branch, "error", err)
		// Reported once per outage; watchers started before reporting
		// existed keep their recorded behaviour.
		if workflow.GetVersion(ctx, VersionReportPollOutage, workflow.DefaultVersion, 1) == 1 {
			if w.st.Outage == "" {
				w.notify(ctx, "polling failing", "", fmt.Sprintf("cannot poll %s: %s; retrying every poll interval", w.in.Branch, errorMessage(err)))
			}
			w.st.Outage = errorMessage(err)
		}
		return res, false
	}
	if w.st.Outage != "" {
		w.notify(ctx, "polling recovered", res.Head, fmt.Sprintf("polling %s works again", w.in.Branch))
		w.st.Outage = ""
	}
	switch {
	case res.Rewritten:
		w.rewritten(ctx, res)
		return res, false
	case w.st.LastSeen == "":
		// First poll: the head is the baseline, or deployed once.
		if res.Initial == config.InitialDeploy && res.Head != "" {
			if err := startChange(ctx, w.in, res.Head, nil, nil); err != nil {
				workflow.GetLogger(ctx).Error("start change run", "commit", res.Head, "error", err)
				return res, false // retried at the next poll
			}
		}
		w.st.LastSeen = res.Head
		return res, false
	}
	// The runs started here enter their stacks' queues in merge order,
	// after they exist (a queue grants by signalling the run). Watchers
	// started before queues existed keep their recorded shape.
	queues := workflow.GetVersion(ctx, VersionEnqueueRuns, workflow.DefaultVersion, 1) == 1
	var entries []contract.QueueRequest
	defer func() { w.enqueue(ctx, entries) }()
	for i, sha := range res.NewCommits {
		var stacks []string
		if queues && i < len(res.Stacks) {
			stacks = res.Stacks[i]
		}
		var about *activities.Commit
		if i < len(res.Commits) {
			about = &res.Commits[i]
		}
		if err := startChange(ctx, w.in, sha, stacks, about); err != nil {
			workflow.GetLogger(ctx).Error("start change run", "commit", sha, "error", err)
			return res, false // retried from this commit at the next poll
		}
		for _, stack := range stacks {
			entries = append(entries, contract.QueueRequest{Stack: stack, RunID: contract.ChangeID(w.in.Repo, w.in.Branch, sha), Commit: sha, Alone: len(stacks) == 1})
		}
		w.st.LastSeen = sha
	}
	return res, len(res.NewCommits) > 0 && w.st.LastSeen != res.Head
}

// enqueueRequested serves the runs that asked for their places.
func (w *watcher) enqueueRequested(ctx workflow.Context) {
	w.enqueue(ctx, w.takeRequests())
}

// enqueue puts runs into their stacks' queues, in order. The activity
// retries until it succeeds: a run waits for its grant meanwhile.
func (w *watcher) enqueue(ctx workflow.Context, entries []contract.QueueRequest) {
	if len(entries) == 0 {
		return
	}
	o := gitOptions(fmt.Sprintf("Enter %d runs into their stack queues", len(entries)))
	o.RetryPolicy.MaximumAttempts = 0
	if err := workflow.ExecuteActivity(withOptions(ctx, o), a.Enqueue, contract.EnqueueRequest{Entries: entries}).Get(ctx, nil); err != nil {
		// Only a refusal that needs a person ends the retries: say it
		// where people look, since the runs wait for their grants.
		workflow.GetLogger(ctx).Error("enqueue runs", "error", err)
		w.notify(ctx, "runs not queued", entries[0].Commit, fmt.Sprintf("%d runs wait for their stacks: %s", len(entries), errorMessage(err)))
	}
}

// rewritten handles a force push that dropped the last seen commit.
func (w *watcher) rewritten(ctx workflow.Context, res activities.PollResult) {
	hold := res.OnRewrite != config.RewriteContinue &&
		workflow.GetVersion(ctx, VersionHoldOnRewrite, workflow.DefaultVersion, 1) == 1
	detail := fmt.Sprintf("%s no longer holds %s (force push?): nothing from the rewritten part is deployed; ",
		w.in.Branch, contract.ShortSHA(w.st.LastSeen))
	if hold {
		w.st.Held = &Rewrite{LastSeen: w.st.LastSeen, Head: res.Head, At: workflow.Now(ctx)}
		w.notify(ctx, "history rewritten", res.Head, detail+fmt.Sprintf("held until `changeops ack-rewrite %s`", w.in.Branch))
		return
	}
	w.notify(ctx, "history rewritten", res.Head, detail+"watching continues from "+contract.ShortSHA(res.Head))
	w.st.LastSeen = res.Head
}

// waitForAck waits for the ack-rewrite update while a rewrite is held.
func (w *watcher) waitForAck(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Held: %s was rewritten; waiting for `changeops ack-rewrite %s`", w.in.Branch, w.in.Branch))
	_ = workflow.Await(ctx, func() bool { return w.st.Held == nil || w.requests.Len() > 0 })
}

func (w *watcher) notify(ctx workflow.Context, step, commit, detail string) {
	e := notify.Event{
		Kind:   notify.KindBranch,
		RunID:  workflow.GetInfo(ctx).WorkflowExecution.ID,
		Branch: w.in.Branch,
		Commit: commit,
		State:  step,
		Step:   step,
		Detail: detail,
	}
	deliver(ctx, e) // rare, and the watcher has nothing else to do meanwhile
}

// waitForPoll sleeps until the interval passes or a poke arrives, then takes
// every pending poke (one poll answers them all).
func waitForPoll(ctx workflow.Context, pokes, requests workflow.ReceiveChannel, interval time.Duration) {
	tctx, cancel := workflow.WithCancel(ctx)
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimerWithOptions(tctx, interval, workflow.TimerOptions{Summary: "poll interval"}), func(workflow.Future) {})
	sel.AddReceive(pokes, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	// A run asking for its places is served first, then the poll runs as
	// for a poke.
	sel.AddReceive(requests, func(workflow.ReceiveChannel, bool) {})
	sel.Select(ctx)
	cancel()
	for pokes.ReceiveAsync(nil) {
	}
}

// startChange starts the commit's run as an abandoned child: it outlives the
// watcher's continue-as-new. A run that already exists (started by hand, or
// before a restart) is the run for that commit. about, when known, names
// the commit in the run's summary and details in the Temporal UI.
func startChange(ctx workflow.Context, in WatcherInput, sha string, enqueued []string, about *activities.Commit) error {
	id := contract.ChangeID(in.Repo, in.Branch, sha)
	summary, details := fmt.Sprintf("Change %s on %s", contract.ShortSHA(sha), in.Branch), ""
	if about != nil {
		summary += ": " + about.Subject
		details = fmt.Sprintf("**Commit** %s\n\n**Author** %s <%s>\n\n**Stacks** %s",
			sha, about.AuthorName, about.AuthorEmail, strings.Join(enqueued, ", "))
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:         summary,
		StaticDetails:         details,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.ChangeCommit.ValueSet(sha),
			contract.ChangeBranch.ValueSet(in.Branch),
			contract.ChangeState.ValueSet(contract.StatePlanning),
		),
	})
	err := workflow.ExecuteChildWorkflow(cctx, contract.ChangeWorkflowName, ChangeInput{Repo: in.Repo, Branch: in.Branch, Commit: sha, UIURL: in.UIURL, Enqueued: enqueued}).
		GetChildWorkflowExecution().Get(ctx, nil)
	var started *temporal.ChildWorkflowExecutionAlreadyStartedError
	if errors.As(err, &started) {
		return nil
	}
	return err
}

// pollOptions: polls retry through remote outages on their own backoff.
func pollOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    5,
		},
	}
}
