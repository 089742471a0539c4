package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/pulumienv"
)

// checkTimeout bounds one check; the workflow retries a failed round on a
// durable timer until the stack's verify_timeout.
const checkTimeout = time.Minute

// Verify runs every check of a stack once and reports each outcome. A failed
// check is a result, not an error: the workflow decides whether to retry.
func (a *Activities) Verify(ctx context.Context, in VerifyInput) (VerifyResult, error) {
	stack, err := a.openStack(ctx, StackInput{RunID: in.RunID, Stack: in.Stack, Commit: in.Commit, Undone: in.Undone})
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{Stack: in.Stack.Name, Passed: true}
	logger := stackLog(ctx, StackInput{RunID: in.RunID, Stack: in.Stack, Commit: in.Commit})
	defer func() { logger.Info("verified", "passed", res.Passed, "checks", len(res.Results)) }()
	// Heartbeats go out on a ticker, not between checks: one check may
	// take up to checkTimeout.
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "verify "+in.Stack.Name)
	defer progress.Stop()
	for _, c := range in.Stack.Verify {
		fmt.Fprintln(progress, c.Name())
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		r := a.runCheck(cctx, stack, in.Stack, c)
		cancel()
		if ctx.Err() != nil {
			return VerifyResult{}, ctx.Err()
		}
		res.Results = append(res.Results, r)
		res.Passed = res.Passed && r.Passed
	}
	return res, nil
}

func (a *Activities) runCheck(ctx context.Context, stack auto.Stack, s config.Stack, c config.Check) CheckResult {
	r := CheckResult{Check: c.Name()}
	switch {
	case c.HTTP != nil:
		r.Passed, r.Detail = a.checkHTTP(ctx, c.HTTP)
	case len(c.Command) > 0:
		r.Passed, r.Detail = checkCommand(ctx, stack, c.Command, a.Pulumi.CheckEnv(s.Env))
	case c.NoChanges:
		r.Passed, r.Detail = checkNoChanges(ctx, stack)
	}
	return r
}

func (a *Activities) checkHTTP(ctx context.Context, c *config.HTTPCheck) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return false, fmt.Sprintf("bad url: %v", err)
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != c.Status {
		return false, fmt.Sprintf("got status %d, want %d", resp.StatusCode, c.Status)
	}
	return true, fmt.Sprintf("status %d", resp.StatusCode)
}

// checkCommand runs argv in the stack's folder with env and the stack's
// non-secret outputs as PULUMI_OUTPUT_<NAME>. The command comes from the
// repository: env holds no variable of the worker's that was not chosen
// for it (pulumienv.Env.CheckEnv).
func checkCommand(ctx context.Context, stack auto.Stack, argv []string, env []string) (bool, string) {
	outputs, err := stack.Outputs(ctx)
	if err != nil {
		return false, fmt.Sprintf("read stack outputs: %s", summarize(err.Error()))
	}
	return runCommand(ctx, stack.Workspace().WorkDir(), argv, append(slices.Clone(env), outputEnv(outputs)...))
}

// maxCheckOutput bounds what a check's output may occupy in memory; the
// last part is kept, where a failing command says why.
const maxCheckOutput = 64 << 10

// maxCheckDetail bounds the part of a check's output its result keeps.
const maxCheckDetail = 500

// runCommand runs a check's command in its own process group, so that
// whatever it starts (a background child that keeps its output open, say)
// ends with it: the group is killed when the command returns or its
// context ends, and Wait gives up on held pipes after a short delay. A
// check's verdict is its command's exit status, never its leftovers.
func runCommand(ctx context.Context, dir string, argv, env []string) (bool, string) {
	name := argv[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	cmd := exec.CommandContext(ctx, name, argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	out := &tailBuffer{max: maxCheckOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left running
	}
	// The output is the repository's command's: colours and control
	// characters go before it reaches status, Slack or a log, and it is cut
	// on a character boundary.
	detail := strings.TrimSpace(pulumienv.Readable(out.String()))
	if len(detail) > maxCheckDetail {
		cut := len(detail) - maxCheckDetail
		for cut < len(detail) && !utf8.RuneStart(detail[cut]) {
			cut++
		}
		detail = "…" + detail[cut:]
	}
	switch {
	case ctx.Err() != nil:
		return false, strings.TrimSpace(fmt.Sprintf("timed out: %s", detail))
	case err != nil && !errors.Is(err, exec.ErrWaitDelay):
		return false, strings.TrimSpace(fmt.Sprintf("%v: %s", err, detail))
	}
	return true, detail
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func outputEnv(outputs auto.OutputMap) []string {
	keys := make([]string, 0, len(outputs))
	for k := range outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []string
	for _, k := range keys {
		o := outputs[k]
		if o.Secret {
			continue // secrets stay out of commands' environments and logs
		}
		v, ok := o.Value.(string)
		if !ok {
			b, _ := json.Marshal(o.Value)
			v = string(b)
		}
		env = append(env, "PULUMI_OUTPUT_"+strings.ToUpper(k)+"="+v)
	}
	return env
}

// checkNoChanges previews again: after a good up there is nothing to do.
func checkNoChanges(ctx context.Context, stack auto.Stack) (bool, string) {
	res, err := stack.Preview(ctx, optpreview.Color("never"))
	if err != nil {
		return false, "preview: " + summarize(err.Error())
	}
	var changes []string
	keys := make([]string, 0, len(res.ChangeSummary))
	for op := range res.ChangeSummary {
		keys = append(keys, string(op))
	}
	sort.Strings(keys)
	for _, op := range keys {
		if op != "same" && res.ChangeSummary[apitype.OpType(op)] > 0 {
			changes = append(changes, fmt.Sprintf("%s=%d", op, res.ChangeSummary[apitype.OpType(op)]))
		}
	}
	if len(changes) > 0 {
		return false, "preview after up still shows changes: " + strings.Join(changes, " ")
	}
	return true, "no changes"
}
