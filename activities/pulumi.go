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
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/gitrevert"
)

// MaxDiffBytes bounds the rendered plan kept in a run's history; the digest
// covers the whole of it.
const MaxDiffBytes = 16 * 1024

// Preview plans one stack at a commit's effective tree.
func (a *Activities) Preview(ctx context.Context, in StackInput) (_ PlanResult, err error) {
	defer func() { err = a.retryBound(ctx, in, err) }()
	stack, err := a.openStack(ctx, in)
	if err != nil {
		return PlanResult{}, err
	}
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "preview "+in.Stack.Name)
	defer progress.Stop()
	if _, _, err := a.recoverIfDied(ctx, stack, in, "a preview", progress); err != nil {
		return PlanResult{}, err
	}
	steps := recordSteps()
	plan, err := previewWith(ctx, stack, in, progress, steps)
	if err != nil {
		stackLog(ctx, in).Warn("preview failed", "error", err)
		return plan, err
	}
	if plan.Policy, err = a.judge(ctx, in, stack.Workspace().WorkDir(), steps.steps); err != nil {
		return PlanResult{}, err
	}
	plan.Artifacts = artifacts(stack.Workspace().WorkDir(), in.Stack.Stack)
	plan.PulumiVersion = a.cliVersion()
	stackLog(ctx, in).Info("previewed", "create", plan.Create, "update", plan.Update, "replace", plan.Replace,
		"delete", plan.Delete, "digest", plan.Digest[:12])
	return plan, nil
}

// stackLog is the activity's logger (workflow and activity IDs) with the
// run, the commit and the stack on every line.
func stackLog(ctx context.Context, in StackInput) log.Logger {
	return log.With(activity.GetLogger(ctx), "run", in.RunID, "commit", contract.ShortSHA(in.Commit), "stack", in.Stack.Name)
}

// previewWith previews the stack, refreshing first when in.Refresh is set,
// with steps recording what the engine would do.
func previewWith(ctx context.Context, stack auto.Stack, in StackInput, progress io.Writer, steps *stepRecorder) (PlanResult, error) {
	opts := []optpreview.Option{optpreview.Diff(), optpreview.Color("never"), optpreview.ProgressStreams(progress)}
	if in.Refresh {
		opts = append(opts, optpreview.Refresh())
	}
	var res auto.PreviewResult
	err := steps.record(func(stream optpreview.Option) (err error) {
		res, err = stack.Preview(ctx, append(opts, stream)...)
		return err
	})
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
func (a *Activities) Apply(ctx context.Context, in StackInput) (_ ApplyResult, err error) {
	// An earlier attempt of this Apply may have begun the update (and
	// died, or failed on a transient error); the failure says whether
	// any had, since a change whose update never began has nothing to
	// roll back.
	began := previousBegan(ctx)
	var progress *heartbeat
	defer func() {
		var ae *temporal.ApplicationError
		if err != nil && !errors.Is(err, context.Canceled) && !(errors.As(err, &ae) && ae.Type() == ErrPlanChanged) {
			err = applyFailure(a.retryBound(ctx, in, err), began || (progress != nil && progress.updating.Load()))
		}
	}()
	stack, err := a.openStack(ctx, in)
	if err != nil {
		return ApplyResult{}, err
	}
	progress = startHeartbeat(ctx, a.HeartbeatEvery, "up "+in.Stack.Name)
	defer progress.Stop()
	_, recovered, err := a.recoverIfDied(ctx, stack, in, "an update", progress)
	if err != nil {
		return ApplyResult{}, err
	}
	// The approved plan binds the update it approved. An update that an
	// earlier attempt began (and died in, or failed transiently) has
	// applied part of that plan already, so a fresh preview shows only
	// the rest: it finishes without a second check.
	if in.Approved != "" && !began {
		now, err := previewWith(ctx, stack, in, progress, recordSteps())
		if err != nil {
			return ApplyResult{}, err
		}
		if now.Steps != in.Approved {
			return ApplyResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("stack %s at %s would now change differently from the approved plan "+
					"(%d to create, %d to update, %d to replace, %d to delete): it must be approved again",
					in.Stack.Name, contract.ShortSHA(in.Commit), now.Create, now.Update, now.Replace, now.Delete),
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
	res, err := up(ctx, stack, opts...)
	if err != nil {
		stackLog(ctx, in).Warn("apply failed", "error", err)
		err = pulumiError("apply", in.Stack, in.Commit, err)
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.Type() == ErrStackLocked {
			progress.updating.Store(began) // refused the lock: this up changed nothing
		}
		return ApplyResult{}, err
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

// applyFailure carries whether the update had begun (ApplyFailure) on an
// Apply's error, keeping its message, type and retryability.
func applyFailure(err error, began bool) error {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrPulumiTransient,
			temporal.ApplicationErrorOptions{Cause: err, Details: []any{ApplyFailure{Began: began}}})
	}
	return temporal.NewApplicationErrorWithOptions(ae.Message(), ae.Type(), temporal.ApplicationErrorOptions{
		NonRetryable: ae.NonRetryable(), Cause: errors.Unwrap(ae), Details: []any{ApplyFailure{Began: began}},
	})
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
	defer func() { release() }() // deployable may replace release
	if err != nil {
		return auto.Stack{}, gitError(err, sha, cache.URL())
	}
	if repo, err = a.deployable(ctx, cache, repo, &release, a.Config.BranchOf(s), sha, in.Undone); err != nil {
		return auto.Stack{}, err
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
		if tree, err = gitrevert.Subtract(ctx, repo, sha, in.Undone); err != nil {
			return auto.Stack{}, effectiveError(err, s.Name)
		}
		err = gitrepo.ExportTree(repo, tree, sha, ws)
	}
	if err != nil {
		return auto.Stack{}, fmt.Errorf("prepare workspace for stack %s at %s: %w", s.Name, contract.ShortSHA(sha), err)
	}
	dir := filepath.Join(ws, filepath.FromSlash(s.Path))
	if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err != nil {
		return auto.Stack{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("stack %s: %s/Pulumi.yaml does not exist at commit %s: fix stacks[].path in the config", s.Name, s.Path, contract.ShortSHA(sha)),
			ErrStackInvalid, nil)
	}
	return a.selectStack(ctx, s, sha, dir)
}

// pulumiError classifies an engine failure the way Pulumi's own operator
// does: only known program and input errors stop at once; a stack locked
// by someone else is waited for; anything else (a cloud API's throttling
// or 5xx, a dropped connection, eventual consistency) is retried. Both
// waits are bounded per stack by retryBound.
func pulumiError(op string, s config.Stack, sha string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := fmt.Sprintf("%s stack %s (%s) at %s: %s", op, s.Name, s.Stack, contract.ShortSHA(sha), summarize(err.Error()))
	// The CLI itself did not start (removed, or broken, since the worker
	// checked it): not the program's fault, and it may be put back.
	if cliDidNotStart(err) {
		return temporal.NewApplicationError(fmt.Sprintf("%s stack %s at %s: the pulumi CLI could not start (%s): reinstall it with scripts/toolchain",
			op, s.Name, contract.ShortSHA(sha), err.Error()), ErrPulumiUnavailable)
	}
	if owner, ok := lockedBy(err); ok {
		return temporal.NewApplicationError(fmt.Sprintf("%s stack %s (%s) at %s: waiting for the lock held by %s",
			op, s.Name, s.Stack, contract.ShortSHA(sha), owner), ErrStackLocked)
	}
	if programError(err.Error()) {
		return temporal.NewNonRetryableApplicationError(msg+pluginHint(err.Error()), ErrPulumiProgram, nil)
	}
	return temporal.NewApplicationError(msg, ErrPulumiTransient)
}

// programErrors are what the engine, the language hosts and providers say
// about a program or its inputs, lower-cased: such a failure repeats
// however often it is retried.
var programErrors = []string{
	"compil",                         // TypeScript, Go, .NET, Java builds
	"on pulumi.yaml line",            // every Pulumi YAML diagnostic
	"could not unmarshal",            // Pulumi.yaml or stack config unreadable
	"invalid yaml",                   //
	"validating stack config",        // missing or mistyped configuration
	"missing required configuration", //
	"missing configuration value",    //
	"no resource plugin",             // a plugin that is not installed
	"could not find plugin",          //
	"download and install",           // acquisition on, the download failed
	"passphrase must be set",         // a passphrase stack, no pulumi.passphrase_env
	"failed to load plugin",          //
	"unable to find resource type",   // a resource type the provider lacks
	"error resolving type of resource",
	"missing required property",   // a provider's input check
	"an unhandled error occurred", // the program threw
	"program exited with non-zero exit code",
}

func programError(msg string) bool {
	m := strings.ToLower(msg)
	for _, p := range programErrors {
		if strings.Contains(m, p) {
			return true
		}
	}
	return false
}

// lockedBy says whether err is "the stack is locked" (a DIY backend's
// lock file, or the service's concurrent update), and by whom, as far as
// the engine says.
func lockedBy(err error) (string, bool) {
	if !auto.IsConcurrentUpdateError(err) && !strings.Contains(err.Error(), "the stack is currently locked") {
		return "", false
	}
	if locks := parseLocks(err.Error()); len(locks) > 0 {
		return locks[0].String(), true
	}
	return "another update", true
}

// retryBound ends the retries of a failure once its kind has been retried
// for as long as the stack allows, counted from the activity's first
// attempt: a stack locked by someone else for lock_wait, any other
// retryable failure for apply_retry_for. The error that ends them says
// so, names the field, and keeps its type.
func retryBound(ctx context.Context, s config.Stack, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.NonRetryable() {
		return err
	}
	limit, field, kind := retryLimit(s, err)
	since := time.Since(activity.GetInfo(ctx).ScheduledTime)
	if since < limit {
		return err
	}
	msg := err.Error()
	if ae != nil {
		msg = ae.Message()
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s (still failing after %s; stacks[].%s of %s is %s)", msg, since.Round(time.Second), field, s.Name, limit),
		kind, err)
}

// retryLimit is how long a stack's step retries a failure like err, the
// setting that says so, and the failure's type.
func retryLimit(s config.Stack, err error) (limit time.Duration, field, kind string) {
	limit, field, kind = s.RetryFor(), "apply_retry_for", ErrPulumiTransient
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		kind = ae.Type()
		if kind == ErrStackLocked {
			limit, field = s.LockWaitFor(), "lock_wait"
		}
	}
	return limit, field, kind
}

func cliDidNotStart(err error) bool {
	var execErr *exec.Error
	if errors.As(err, &execErr) || errors.Is(err, fs.ErrNotExist) {
		return true
	}
	m := err.Error()
	return strings.Contains(m, "fork/exec ") || strings.Contains(m, "exec format error")
}

// sourceLine is where Pulumi YAML says a diagnostic comes from.
var sourceLine = regexp.MustCompile(`^on \S+ line \d+`)

// summarize keeps the lines of an engine failure a person needs: those that
// say "error", and the file line they point at, without the CLI's banner
// and progress noise.
func summarize(out string) string {
	var keep []string
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "code:") {
			continue
		}
		// The Automation API's error has the CLI's first line of output
		// after "stdout: " and "stderr: ": often the engine's error itself.
		for _, p := range []string{"stdout:", "stderr:"} {
			line = strings.TrimSpace(strings.TrimPrefix(line, p))
		}
		if line == "" || seen[line] || !(strings.Contains(strings.ToLower(line), "error") || sourceLine.MatchString(line)) {
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
