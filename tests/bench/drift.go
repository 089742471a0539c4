package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/workflows"
)

// driftCheck times a drift check that finds no drift (a DriftWorkflow run
// from its start to drift-none, as the server recorded it) against the
// bare `pulumi refresh --preview-only` of the bare twin of the same stack,
// alternately. The stack must have been deployed by a change run.
func (b *bench) driftCheck(ctx context.Context, pairs int) (ours, bare []float64, err error) {
	for i := 0; i <= pairs; i++ { // the first pair warms up, untimed
		id, err := starter.Drift(ctx, b.client, b.cfg, starter.DriftRequest{Stack: b.cfg.Stacks[0].Name, By: "bench"})
		if err != nil {
			return nil, nil, err
		}
		var res workflows.ChangeResult
		if err := b.waitResult(ctx, id, &res); err != nil {
			return nil, nil, err
		}
		if res.State != contract.StateDriftNone {
			return nil, nil, fmt.Errorf("drift check %s ended %s: %s", id, res.State, res.Reason)
		}
		d, err := b.client.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return nil, nil, err
		}
		info := d.GetWorkflowExecutionInfo()
		o := info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())

		cmd := exec.CommandContext(ctx, filepath.Join(b.tools, "bin", "pulumi"), "refresh", "--preview-only", "--stack", "bare", "--non-interactive")
		cmd.Dir = b.bare
		cmd.Env = os.Environ()
		for k, v := range b.env.Vars() {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("pulumi refresh --preview-only: %v: %s", err, out)
		}
		t := time.Since(start)
		if i > 0 {
			ours, bare = append(ours, o.Seconds()), append(bare, t.Seconds())
		}
	}
	return ours, bare, nil
}
