package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
)

// Drifted is one resource whose live state differs from what the stack's
// last good commit deploys, as the engine reports it: the operation that
// re-applying git would take, and the properties it would change.
type Drifted struct {
	URN        string
	Op         string
	Properties []string `json:",omitempty"`
}

// DriftResult is one drift check: a refresh and preview of a stack at its
// last good state. Plan is what re-applying git would do; its Steps digest
// binds an approval to exactly that.
type DriftResult struct {
	Plan      PlanResult
	Resources []Drifted
}

// Drifted says whether the live stack differs from git.
func (d DriftResult) Drifted() bool { return d.Plan.Changes() > 0 }

// MaxDrifted bounds the resources a DriftResult names; Plan counts all.
const MaxDrifted = 50

// StackConfig returns the configured stack of that name, so a drift run
// checks with the policy in force when it starts.
func (a *Activities) StackConfig(ctx context.Context, name string) (config.Stack, error) {
	for _, s := range a.Config.Stacks {
		if s.Name == name {
			return s, nil
		}
	}
	return config.Stack{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("stack %s is not in the configuration: its drift schedule outlived it; the worker deletes such schedules at start-up", name),
		ErrStackInvalid, nil)
}

// DriftCheck refreshes the stack's view of its resources and previews the
// stack's last good state against it (`pulumi preview --refresh`): any step
// is a difference between the live system and git. Nothing is written:
// the refresh in a preview is not saved.
func (a *Activities) DriftCheck(ctx context.Context, in StackInput) (_ DriftResult, err error) {
	defer func() { err = a.retryBound(ctx, in, err) }()
	stack, err := a.openStack(ctx, in)
	if err != nil {
		return DriftResult{}, err
	}
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "drift check "+in.Stack.Name)
	defer progress.Stop()
	if _, _, err := a.recoverIfDied(ctx, stack, in, "a drift check", progress); err != nil {
		return DriftResult{}, err
	}
	in.Refresh = true
	rec := recordSteps()
	plan, err := previewWith(ctx, stack, in, progress, rec)
	if err != nil {
		stackLog(ctx, in).Warn("drift check failed", "error", err)
		return DriftResult{}, err
	}
	plan.PulumiVersion = a.cliVersion()
	// Re-applying git over drift is judged like any plan.
	if len(rec.drifted) > 0 {
		if plan.Policy, err = a.judge(ctx, in, stack.Workspace().WorkDir(), rec.steps); err != nil {
			return DriftResult{}, err
		}
	}
	res := DriftResult{Plan: plan, Resources: rec.drifted}
	if len(res.Resources) > MaxDrifted {
		res.Resources = res.Resources[:MaxDrifted]
	}
	stackLog(ctx, in).Info("drift checked", "drifted", res.Drifted(), "create", plan.Create, "update", plan.Update,
		"replace", plan.Replace, "delete", plan.Delete)
	return res, nil
}
