package pulumienv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
)

// command is the pinned CLI as the Automation API runs it
// (auto.PulumiCommand), with one difference: the Automation API's own
// command starts every CLI call with the worker's whole environment
// (os.Environ) plus the workspace's variables, and v3.259.0 has no option
// to replace it, so a program would see the worker's secrets. This one
// starts from env (Base and Vars) and adds only what the workspace sets
// (PULUMI_HOME and auto.EnvVars: StackVars).
//
// And what the CLI prints reaches the Automation API, and from there
// errors, plans, heartbeats, Slack and workflow histories, as Readable
// text: without terminal escape codes, and with the secrets changeops
// handed the CLI (the passphrase, the service's access token) masked.
type command struct {
	bin     string
	version semver.Version
	env     map[string]string
	secrets []string
}

var _ auto.PulumiCommand = command{}

// cliEnv is what every CLI call starts from: Base, then Vars.
func (e Env) cliEnv() map[string]string {
	env := e.Base()
	maps.Copy(env, e.Vars())
	return env
}

func (e Env) newCommand(ctx context.Context) (command, error) {
	c := command{bin: e.bin(), env: e.cliEnv(), secrets: e.secrets()}
	cmd := exec.CommandContext(ctx, c.bin, "version")
	cmd.Env = List(c.env)
	out, err := cmd.Output()
	if err != nil {
		return command{}, fmt.Errorf("run `pulumi version`: %w", err)
	}
	c.version, err = semver.ParseTolerant(strings.TrimSpace(string(out)))
	if err != nil {
		return command{}, fmt.Errorf("read the version `pulumi version` printed (%q): %w", strings.TrimSpace(string(out)), err)
	}
	return c, nil
}

// Version is the CLI's version.
func (c command) Version() semver.Version { return c.version }

// Run runs the CLI as the Automation API expects: non-interactive, in
// workdir, output copied to the extra writers as it comes, interrupted
// (then killed) when ctx ends.
func (c command) Run(ctx context.Context, workdir string, stdin io.Reader,
	additionalOutput, additionalErrorOutput []io.Writer, additionalEnv []string, args ...string,
) (string, string, int, error) {
	flags := args
	if i := slices.Index(args, "--"); i >= 0 {
		flags = args[:i]
	}
	if !slices.Contains(flags, "--non-interactive") {
		args = append([]string{"--non-interactive"}, args...)
	}
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = workdir
	// Later lines win: the workspace's variables over the base.
	cmd.Env = List(c.env, append(slices.Clone(additionalEnv), "PULUMI_AUTOMATION_API=true")...)
	var stdout, stderr bytes.Buffer
	outs, errs := c.lines(additionalOutput), c.lines(additionalErrorOutput)
	defer outs.flush()
	defer errs.flush()
	cmd.Stdout = io.MultiWriter(outs, &stdout)
	cmd.Stderr = io.MultiWriter(errs, &stderr)
	cmd.Stdin = stdin
	// An interrupted CLI cancels its update and releases the stack's lock;
	// one that ignores the interrupt is killed after WaitDelay.
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			_ = cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	code := -2 // the Automation API's "unknown" exit code
	var exit *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &exit):
		code = exit.ExitCode()
	}
	return c.readable(stdout.String()), c.readable(stderr.String()), code, err
}
