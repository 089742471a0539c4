package activities

import (
	"context"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
)

// maxCachedStacks bounds the stacks kept selected between activities.
const maxCachedStacks = 64

// stackCache keeps selected Pulumi stacks and the CLI handle between the
// activities of a run: preview, up and each verification round of a stack
// at a commit use the same workspace, so each pays for neither `pulumi
// version` nor `pulumi stack select` again (about a second per call).
type stackCache struct {
	mu     sync.Mutex
	cmd    auto.PulumiCommand
	stacks map[string]auto.Stack
	order  []string
}

// command returns the pinned CLI, checked once per process.
func (a *Activities) command() (auto.PulumiCommand, error) {
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	if a.cache.cmd != nil {
		return a.cache.cmd, nil
	}
	cmd, err := a.Pulumi.Command()
	if err != nil {
		// Retried: the toolchain may be installed while the run waits.
		return nil, temporal.NewApplicationError(err.Error(), ErrPulumiUnavailable)
	}
	a.cache.cmd = cmd
	return cmd, nil
}

// cliVersion is the version of the CLI the activities run ("" if it
// cannot start), for the records of what planned a change.
func (a *Activities) cliVersion() string {
	cmd, err := a.command()
	if err != nil {
		return ""
	}
	return "v" + cmd.Version().String()
}

// selectStack returns the stack for s in dir, selecting (or creating) it
// the first time.
func (a *Activities) selectStack(ctx context.Context, s config.Stack, sha, dir string) (auto.Stack, error) {
	key := s.Name + "@" + dir
	a.cache.mu.Lock()
	st, ok := a.cache.stacks[key]
	a.cache.mu.Unlock()
	if ok {
		return st, nil
	}
	cmd, err := a.command()
	if err != nil {
		return auto.Stack{}, err
	}
	opts := []auto.LocalWorkspaceOption{
		auto.Pulumi(cmd),
		auto.PulumiHome(a.Pulumi.Home),
		// With Base from the command, all the CLI gets: the program and
		// providers see no variable but these.
		auto.EnvVars(a.Pulumi.StackVars(s.Env)),
	}
	// A stack changeops creates keeps its secrets with the configured
	// provider; one that exists keeps the provider its
	// Pulumi.<stack>.yaml names, as the CLI would.
	switch s.SecretsProvider {
	case "", config.SecretsDefault, config.SecretsService:
	default:
		opts = append(opts, auto.SecretsProvider(s.SecretsProvider))
	}
	st, err = auto.UpsertStackLocalSource(ctx, s.Stack, dir, opts...)
	if err != nil {
		return auto.Stack{}, pulumiError("select", s, sha, err)
	}
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	if a.cache.stacks == nil {
		a.cache.stacks = map[string]auto.Stack{}
	}
	if _, ok := a.cache.stacks[key]; !ok {
		a.cache.stacks[key] = st
		a.cache.order = append(a.cache.order, key)
		if len(a.cache.order) > maxCachedStacks {
			delete(a.cache.stacks, a.cache.order[0])
			a.cache.order = a.cache.order[1:]
		}
	}
	return st, nil
}

// up runs `pulumi up` on a selected stack, and `pulumi stack history` for
// the update's name (ApplyResult), and nothing more. The Automation API's
// Stack.Up also reads the stack's outputs after the update (`pulumi stack
// output`, twice: plain, then with secrets), which Apply never uses: two
// CLI processes on the run's path, each costing about what the CLI's
// start-up costs (0.1 to 0.3 s).
func up(ctx context.Context, stack auto.Stack, opts ...optup.Option) (auto.UpResult, error) {
	lean, err := auto.SelectStack(ctx, stack.Name(), upWorkspace{stack.Workspace()})
	if err != nil {
		return auto.UpResult{}, err
	}
	return lean.Up(ctx, opts...)
}

// upWorkspace is a selected stack's workspace as up sees it: selecting
// is done (openStack did it) and the outputs are not read. Only up goes
// through it: the Automation API does some things only for a
// *LocalWorkspace (Stack.Cancel, which recovery uses), so every other
// call keeps the stack openStack returned.
type upWorkspace struct{ auto.Workspace }

// SelectStack: openStack selected the stack in this workspace.
func (upWorkspace) SelectStack(context.Context, string) error { return nil }

// StackOutputs: Apply does not use them (see up).
func (upWorkspace) StackOutputs(context.Context, string) (auto.OutputMap, error) {
	return auto.OutputMap{}, nil
}
