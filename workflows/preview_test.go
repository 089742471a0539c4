package workflows

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// A push while a preview runs cancels it and previews the new head; the
// pull request closed ends the workflow. The forge (PreparePull), not the
// signals, says what the pull request is.
func TestPreviewIsSupersededByANewPushAndEndsWhenClosed(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{})
	Workflows{Gate: testGate}.Register(env)

	var mu sync.Mutex
	heads := []string{"head1", "head2", ""} // "" closed
	var prepared, reported []string
	env.OnActivity(a.PreparePull, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PullInput) (activities.PullPlan, error) {
		mu.Lock()
		defer mu.Unlock()
		head := heads[0]
		heads = heads[1:]
		prepared = append(prepared, head)
		if head == "" {
			return activities.PullPlan{Number: in.Number, Skipped: activities.SkipClosed}, nil
		}
		return activities.PullPlan{Number: in.Number, Head: head, Branch: "main", Tree: "tree-" + head,
			Stacks: []config.Stack{{Name: "web"}}}, nil
	})
	env.OnActivity(a.PreviewPull, mock.Anything, mock.Anything).After(time.Minute).Return(func(_ context.Context, in activities.PullStackInput) (activities.PullStackPlan, error) {
		return activities.PullStackPlan{PlanResult: activities.PlanResult{Stack: in.Stack.Name, Update: 1, Steps: "steps-" + in.Head}}, nil
	})
	var announced []string
	env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, e notify.Event) (notify.Thread, error) {
		mu.Lock()
		defer mu.Unlock()
		announced = append(announced, e.Commit)
		return notify.Thread{Channel: "C1", ParentTS: "1.0"}, nil
	})
	env.OnActivity(a.ReportPull, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PullReport) error {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, in.Plan.Head)
		return nil
	})
	// Opened (the start's signal), pushed to half-way through the first
	// preview, closed after the second.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.PullRequestSignal, contract.PullRequestEvent{Number: 7, Action: "synchronized"})
	}, 30*time.Second)
	var mid PreviewStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(contract.PreviewQuery)
		if err != nil {
			t.Error(err)
			return
		}
		_ = v.Get(&mid)
		env.SignalWorkflow(contract.PullRequestSignal, contract.PullRequestEvent{Number: 7, Action: "closed"})
	}, 10*time.Minute)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.PullRequestSignal, contract.PullRequestEvent{Number: 7, Action: "opened"})
	}, 0)
	env.ExecuteWorkflow(PreviewWorkflow, PreviewInput{Number: 7})

	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("completed %v, error %v; want it to end when the pull request is closed", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"head1", "head2", ""}; !slices.Equal(prepared, want) {
		t.Fatalf("prepared %q, want %q", prepared, want)
	}
	// The test environment runs a cancelled activity's mock to its end
	// anyway; what counts is that its result was dropped.
	if want := []string{"head2"}; !slices.Equal(reported, want) || !slices.Equal(announced, want) {
		t.Fatalf("reported %q and announced %q, want only %q: the first preview was superseded", reported, announced, want)
	}
	if mid.State != PreviewPreviewed || mid.Superseded != 1 || mid.Previews != 2 || len(mid.Stacks) != 1 || mid.Stacks[0].Steps != "steps-head2" || mid.Thread.ParentTS != "1.0" {
		t.Fatalf("status after the second preview = %+v", mid)
	}
}
