package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/workflows"
)

// queueThroughput pushes count commits to the stack at once and times
// them through its queue, one run after another, from the push to the
// last run's end; against count bare `up` calls in a row on the bare twin
// of the stack. It returns runs per minute on both sides.
func (b *bench) queueThroughput(ctx context.Context, count int) (ours, bare float64, err error) {
	var last string
	for i := range count {
		if err := setContent(b.repo+"/stacks/site", "bench", fmt.Sprintf("q%d", i)); err != nil {
			return 0, 0, err
		}
		if err := git(b.repo, "add", "-A"); err != nil {
			return 0, 0, err
		}
		if err := git(b.repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", fmt.Sprintf("q%d", i)); err != nil {
			return 0, 0, err
		}
	}
	if last, err = gitOut(b.repo, "rev-parse", "HEAD"); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := git(b.repo, "push", "-q", "origin", "HEAD"); err != nil {
		return 0, 0, err
	}
	var res workflows.ChangeResult
	id := contract.ChangeWorkflowID(b.branch, last)
	if err := b.waitResult(ctx, id, &res); err != nil {
		return 0, 0, err
	}
	// The queue is first in, first out: the last run ends last.
	if res.State != contract.StateSucceeded {
		return 0, 0, fmt.Errorf("the last queued run %s ended %s: %s", id, res.State, res.Reason)
	}
	ours = float64(count) / time.Since(start).Minutes()

	cmd, err := b.env.Command()
	if err != nil {
		return 0, 0, err
	}
	st, err := auto.UpsertStackLocalSource(ctx, "bare", b.bare, auto.Pulumi(cmd), auto.PulumiHome(b.env.Home), auto.EnvVars(b.env.Vars()))
	if err != nil {
		return 0, 0, err
	}
	start = time.Now()
	for i := range count {
		if err := setContent(b.bare, "bare", fmt.Sprintf("q%d", i)); err != nil {
			return 0, 0, err
		}
		if _, err := st.Up(ctx); err != nil {
			return 0, 0, err
		}
	}
	bare = float64(count) / time.Since(start).Minutes()
	return ours, bare, nil
}
