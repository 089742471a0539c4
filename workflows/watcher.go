package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/internal/notify"
)

// pollsPerRun bounds the watcher's history: after this many polls it
// continues as new with the last seen commit.
const pollsPerRun = 500

// WatcherWorkflow polls a branch and starts one ChangeWorkflow per new
// first-parent commit, oldest first. A poke signal (webhook) polls at once;
// the watcher still decides what is new, so a lost or repeated webhook costs
// at most one interval and never a change.
func WatcherWorkflow(ctx workflow.Context, in WatcherInput) error {
	logger := workflow.GetLogger(ctx)
	pokes := workflow.GetSignalChannel(ctx, PokeSignal)
	lastSeen := in.LastSeen
	interval := 30 * time.Second
	for i := 0; i < pollsPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); i++ {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Watching %s; last seen %s", in.Branch, shortSHA(lastSeen)))
		var res activities.PollResult
		err := workflow.ExecuteActivity(withOptions(ctx, pollOptions("Poll "+in.Branch)),
			a.PollBranch, activities.PollInput{Branch: in.Branch, LastSeen: lastSeen}).Get(ctx, &res)
		switch {
		case err != nil:
			logger.Warn("poll failed", "branch", in.Branch, "error", err)
		case res.Rewritten:
			// History seen before is gone. Nothing from the rewritten part
			// is deployed; watching resumes from the new head.
			reportRewrite(ctx, in, lastSeen, res.Head)
			lastSeen = res.Head
		default:
			for _, sha := range res.NewCommits {
				if err := startChange(ctx, in, sha); err != nil {
					logger.Error("start change run", "commit", sha, "error", err)
					break // retried from this commit at the next poll
				}
				lastSeen = sha
			}
			if lastSeen == "" {
				lastSeen = res.Head // first poll: the head is the baseline
			}
		}
		if res.PollInterval > 0 {
			interval = res.PollInterval
		}
		if err == nil && len(res.NewCommits) > 0 && lastSeen != res.Head {
			continue // a long backlog: keep going without waiting
		}
		waitForPoll(ctx, pokes, interval)
	}
	return workflow.NewContinueAsNewError(ctx, WatcherWorkflow, WatcherInput{Branch: in.Branch, LastSeen: lastSeen, UIURL: in.UIURL})
}

// waitForPoll sleeps until the interval passes or a poke arrives, then takes
// every pending poke (one poll answers them all).
func waitForPoll(ctx workflow.Context, pokes workflow.ReceiveChannel, interval time.Duration) {
	tctx, cancel := workflow.WithCancel(ctx)
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimerWithOptions(tctx, interval, workflow.TimerOptions{Summary: "poll interval"}), func(workflow.Future) {})
	sel.AddReceive(pokes, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	sel.Select(ctx)
	cancel()
	for pokes.ReceiveAsync(nil) {
	}
}

// startChange starts the commit's run as an abandoned child: it outlives the
// watcher's continue-as-new. A run that already exists (started by hand, or
// before a restart) is the run for that commit.
func startChange(ctx workflow.Context, in WatcherInput, sha string) error {
	id := ChangeWorkflowID(in.Branch, sha)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:         fmt.Sprintf("Change %s on %s", shortSHA(sha), in.Branch),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			ChangeCommit.ValueSet(sha),
			ChangeBranch.ValueSet(in.Branch),
			ChangeState.ValueSet(StatePlanning),
		),
	})
	err := workflow.ExecuteChildWorkflow(cctx, ChangeWorkflow, ChangeInput{Branch: in.Branch, Commit: sha, UIURL: in.UIURL}).
		GetChildWorkflowExecution().Get(ctx, nil)
	var started *temporal.ChildWorkflowExecutionAlreadyStartedError
	if errors.As(err, &started) {
		return nil
	}
	return err
}

func reportRewrite(ctx workflow.Context, in WatcherInput, lastSeen, head string) {
	e := notify.Event{
		RunID:  workflow.GetInfo(ctx).WorkflowExecution.ID,
		Branch: in.Branch,
		Commit: head,
		State:  "history-rewritten",
		Step:   "history rewritten",
		Detail: fmt.Sprintf("%s no longer holds %s (force push?): nothing from the rewritten part is deployed; watching continues from %s",
			in.Branch, shortSHA(lastSeen), shortSHA(head)),
	}
	if err := workflow.ExecuteActivity(withOptions(ctx, notifyOptions("Notify: history rewritten")), a.Notify, e).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("notification not delivered", "error", err)
	}
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
