package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/gitrevert"
)

// MaxDiffBytes bounds the rendered plan kept in a run's history; the digest
// covers the whole of it.
const MaxDiffBytes = 16 * 1024

// Preview plans one stack at a commit's effective tree.
func (a *Activities) Preview(ctx context.Context, in StackInput) (PlanResult, error) {
	stack, err := a.openStack(ctx, in)
	if err != nil {
		return PlanResult{}, err
	}
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "preview "+in.Stack.Name)
	defer progress.Stop()
	if _, _, err := recoverIfDied(ctx, stack, in, "a preview"); err != nil {
		return PlanResult{}, err
	}
	plan, err := previewWith(ctx, stack, in, progress, recordSteps())
	if err != nil {
		stackLog(ctx, in).Warn("preview failed", "error", err)
		return plan, err
	}
	plan.Artifacts = artifacts(stack.Workspace().WorkDir(), in.Stack.Stack)
	stackLog(ctx, in).Info("previewed", "create", plan.Create, "update", plan.Update, "replace", plan.Replace,
		"delete", plan.Delete, "digest", plan.Digest[:12])
	return plan, nil
}

// stackLog is the activity's logger (workflow and activity IDs) with the
// run, the commit and the stack on every line.
func stackLog(ctx context.Context, in StackInput) log.Logger {
	return log.With(activity.GetLogger(ctx), "run", in.RunID, "commit", short(in.Commit), "stack", in.Stack.Name)
}

// previewWith previews the stack, refreshing first when in.Refresh is set,
// with steps recording what the engine would do.
func previewWith(ctx context.Context, stack auto.Stack, in StackInput, progress io.Writer, steps *stepRecorder) (PlanResult, error) {
	opts := []optpreview.Option{optpreview.Diff(), optpreview.Color("never"),
		optpreview.ProgressStreams(progress), optpreview.EventStreams(steps.events)}
	if in.Refresh {
		opts = append(opts, optpreview.Refresh())
	}
	res, err := stack.Preview(ctx, opts...)
	if err != nil {
		return PlanResult{}, pulumiError("preview", in.Stack, in.Commit, err)
	}
	plan := PlanResult{Stack: in.Stack.Name, Steps: steps.digest()}
	countOps(res.ChangeSummary, &plan.Create, &plan.Update, &plan.Replace, &plan.Delete, &plan.Same)
	sum := sha256.Sum256([]byte(res.StdOut))
	plan.Digest = hex.EncodeToString(sum[:])
	plan.Diff = res.StdOut
	if len(plan.Diff) > MaxDiffBytes {
		plan.Diff = plan.Diff[:MaxDiffBytes]
		plan.DiffTruncated = true
	}
	return plan, nil
}

// Apply runs up for one stack at a commit's effective tree. Up converges
// on the program's desired state, so a retried attempt never duplicates
// resources. With in.Approved set, a fresh preview must match the approved
// plan first: between approval and apply the stack may have drifted or the
// program may resolve differently, and what runs must be what was approved.
func (a *Activities) Apply(ctx context.Context, in StackInput) (ApplyResult, error) {
	stack, err := a.openStack(ctx, in)
	if err != nil {
		return ApplyResult{}, err
	}
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "up "+in.Stack.Name)
	defer progress.Stop()
	resumed, recovered, err := recoverIfDied(ctx, stack, in, "an update")
	if err != nil {
		return ApplyResult{}, err
	}
	// The approved plan binds the update it approved. An update that a
	// dead attempt began has applied part of that plan already, so a fresh
	// preview shows only the rest: it finishes without a second check.
	if in.Approved != "" && !resumed {
		now, err := previewWith(ctx, stack, in, progress, recordSteps())
		if err != nil {
			return ApplyResult{}, err
		}
		if now.Steps != in.Approved {
			return ApplyResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("stack %s at %s would now change differently from the approved plan "+
					"(%d to create, %d to update, %d to replace, %d to delete): it must be approved again",
					in.Stack.Name, short(in.Commit), now.Create, now.Update, now.Replace, now.Delete),
				ErrPlanChanged, nil, now)
		}
	}
	opts := []optup.Option{optup.Color("never"), optup.ProgressStreams(progress)}
	if in.Refresh {
		// Re-applying git over drift: up must see the live state, or it
		// would find nothing to change.
		opts = append(opts, optup.Refresh())
	}
	progress.Updating()
	res, err := stack.Up(ctx, opts...)
	if err != nil {
		stackLog(ctx, in).Warn("apply failed", "error", err)
		return ApplyResult{}, pulumiError("apply", in.Stack, in.Commit, err)
	}
	out := ApplyResult{Stack: in.Stack.Name, UpdateVersion: res.Summary.Version, UpdateStarted: res.Summary.StartTime, Recovered: recovered}
	if rc := res.Summary.ResourceChanges; rc != nil {
		ops := map[apitype.OpType]int{}
		for k, v := range *rc {
			ops[apitype.OpType(k)] = v
		}
		countOps(ops, &out.Create, &out.Update, &out.Replace, &out.Delete, &out.Same)
	}
	stackLog(ctx, in).Info("applied", "create", out.Create, "update", out.Update, "replace", out.Replace,
		"delete", out.Delete, "same", out.Same, "pulumi_update", out.UpdateStarted)
	return out, nil
}

func countOps(ops map[apitype.OpType]int, create, update, replace, del, same *int) {
	*create = ops[apitype.OpCreate]
	*update = ops[apitype.OpUpdate]
	*replace = ops[apitype.OpReplace]
	*del = ops[apitype.OpDelete]
	*same = ops[apitype.OpSame]
}

// openStack exports the effective tree into its workspace and selects (or
// creates) the Pulumi stack there.
func (a *Activities) openStack(ctx context.Context, in StackInput) (auto.Stack, error) {
	s, sha := in.Stack, in.Commit
	cache, err := a.git(s.Repo)
	if err != nil {
		return auto.Stack{}, err
	}
	repo, release, err := cache.EnsureCommit(ctx, sha)
	defer release()
	if err != nil {
		return auto.Stack{}, gitError(err, sha, cache.URL())
	}
	ws := a.workspace(s.Repo, sha)
	switch {
	case len(in.Undone) == 0:
		err = gitrepo.Export(repo, sha, ws)
	default:
		// The effective tree has a folder of its own, named by what was
		// subtracted; it is computed from the recorded list (so a retry on
		// another worker deploys the same tree), and only once per
		// worker: verification rounds find it exported.
		sum := sha256.Sum256([]byte(strings.Join(in.Undone, ",")))
		ws += "-without-" + hex.EncodeToString(sum[:6])
		if gitrepo.Exported(ws) {
			break
		}
		var tree plumbing.Hash
		if tree, err = gitrevert.Subtract(repo, sha, in.Undone); err != nil {
			return auto.Stack{}, effectiveError(err, s.Name)
		}
		err = gitrepo.ExportTree(repo, tree, sha, ws)
	}
	if err != nil {
		return auto.Stack{}, fmt.Errorf("prepare workspace for stack %s at %s: %w", s.Name, short(sha), err)
	}
	dir := filepath.Join(ws, filepath.FromSlash(s.Path))
	if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err != nil {
		return auto.Stack{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("stack %s: %s/Pulumi.yaml does not exist at commit %s: fix stacks[].path in the config", s.Name, s.Path, short(sha)),
			ErrStackInvalid, nil)
	}
	return a.selectStack(ctx, s, sha, dir)
}

// pulumiError classifies an engine failure. A concurrent update is retried
// (another run holds the stack); anything else the engine reports is about
// the program or its inputs and would fail the same way again.
func pulumiError(op string, s config.Stack, sha string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := fmt.Sprintf("%s stack %s (%s) at %s: %s", op, s.Name, s.Stack, short(sha), summarize(err.Error()))
	// The CLI itself did not start (removed, or broken, since the worker
	// checked it): not the program's fault, and it may be put back.
	if cliDidNotStart(err) {
		return temporal.NewApplicationError(fmt.Sprintf("%s stack %s at %s: the pulumi CLI could not start (%s): reinstall it with scripts/toolchain",
			op, s.Name, short(sha), err.Error()), ErrPulumiUnavailable)
	}
	// Another update holds the stack (Pulumi Cloud's 409, or a DIY
	// backend's lock file): wait and retry.
	if auto.IsConcurrentUpdateError(err) || strings.Contains(err.Error(), "the stack is currently locked") {
		return temporal.NewApplicationError(msg, "PulumiConcurrentUpdate")
	}
	return temporal.NewNonRetryableApplicationError(msg, ErrPulumiProgram, nil)
}

func cliDidNotStart(err error) bool {
	var execErr *exec.Error
	if errors.As(err, &execErr) || errors.Is(err, fs.ErrNotExist) {
		return true
	}
	m := err.Error()
	return strings.Contains(m, "fork/exec ") || strings.Contains(m, "exec format error")
}

// summarize keeps the lines of an engine failure a person needs: those that
// say "error", without the CLI's banner and progress noise.
func summarize(out string) string {
	var keep []string
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || seen[line] || !strings.Contains(strings.ToLower(line), "error") {
			continue
		}
		if strings.HasPrefix(line, "code:") || strings.HasPrefix(line, "stdout:") || strings.HasPrefix(line, "stderr:") {
			continue
		}
		seen[line] = true
		keep = append(keep, line)
		if len(keep) == 6 {
			break
		}
	}
	if len(keep) == 0 {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) > 3 {
			lines = lines[len(lines)-3:]
		}
		keep = lines
	}
	s := strings.Join(keep, "; ")
	if len(s) > 1500 {
		s = s[:1500] + "…"
	}
	return s
}
