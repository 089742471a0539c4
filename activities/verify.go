package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"go.temporal.io/sdk/activity"

	"github.com/changeops/changeops/config"
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
	for _, c := range in.Stack.Verify {
		activity.RecordHeartbeat(ctx, "verify "+in.Stack.Name+": "+c.Name())
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
		r.Passed, r.Detail = checkCommand(ctx, stack, c.Command)
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

// checkCommand runs argv in the stack's folder with the stack's non-secret
// outputs in the environment as PULUMI_OUTPUT_<NAME>.
func checkCommand(ctx context.Context, stack auto.Stack, argv []string) (bool, string) {
	outputs, err := stack.Outputs(ctx)
	if err != nil {
		return false, fmt.Sprintf("read stack outputs: %s", summarize(err.Error()))
	}
	dir := stack.Workspace().WorkDir()
	name := argv[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	cmd := exec.CommandContext(ctx, name, argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), outputEnv(outputs)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	detail := strings.TrimSpace(out.String())
	if len(detail) > 500 {
		detail = detail[len(detail)-500:]
	}
	if err != nil {
		return false, strings.TrimSpace(fmt.Sprintf("%v: %s", err, detail))
	}
	return true, detail
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
