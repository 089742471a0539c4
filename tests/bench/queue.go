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
	var shas []string
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
		sha, err := gitOut(b.repo, "rev-parse", "HEAD")
		if err != nil {
			return 0, 0, err
		}
		shas = append(shas, sha)
	}
	start := time.Now()
	if err := git(b.repo, "push", "-q", "origin", "HEAD"); err != nil {
		return 0, 0, err
	}
	// Every run must end succeeded: in a batch, the members end when
	// their leader tells them, just before it ends itself.
	for _, sha := range shas {
		var res workflows.ChangeResult
		id := contract.ChangeWorkflowID(b.branch, sha)
		if err := b.waitResult(ctx, id, &res); err != nil {
			return 0, 0, err
		}
		if res.State != contract.StateSucceeded {
			return 0, 0, fmt.Errorf("the queued run %s ended %s: %s", id, res.State, res.Reason)
		}
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

// queueFigure is -only queue: the queue throughput figure alone, on a
// one-resource stack (-queue changes, -batch).
func queueFigure(ctx context.Context, dir, tools, temporal string) (missed int, err error) {
	b, err := setup(ctx, dir, tools, temporal, 1, time.Second)
	if err != nil {
		return 0, err
	}
	defer b.worker.Stop()
	ours, bare, err := b.queueThroughput(ctx, queueRuns)
	if err != nil {
		return 0, err
	}
	return printQueue(ours, bare), nil
}

// printQueue prints the queue figure and returns 1 when it misses its
// target: 0.90 of bare sequential ups one by one, 3 with batches (#25).
func printQueue(ours, bare float64) (missed int) {
	ratio, target, name := ours/bare, 0.9, fmt.Sprintf("queue: %d changes on one stack", queueRuns)
	if queueBatch > 1 {
		target, name = 3, fmt.Sprintf("queue: %d changes, batch %d", queueRuns, queueBatch)
	}
	if ratio < target {
		missed = 1
	}
	fmt.Printf("%-34s %7.1f/min %7.1f/min %7.2f %8s\n", name, ours, bare, ratio, fmt.Sprintf("≥ %.2f", target))
	return missed
}
