package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/gitrevert"
)

// Effective works out what a run deploys now that its turn has come: the
// commit's tree minus every change a revert on the branch has undone since
// (docs/design.md, "The effective tree"). Deploying the commit's own tree would
// bring back a change that failed and was reverted while the run queued.
func (a *Activities) Effective(ctx context.Context, in EffectiveInput) (EffectiveResult, error) {
	cache, err := a.git(in.Repo)
	if err != nil {
		return EffectiveResult{}, err
	}
	repo, release, err := cache.Fetch(ctx)
	defer release()
	if err != nil {
		return EffectiveResult{}, gitError(err, in.Commit, cache.URL())
	}
	head, err := gitrepo.Head(repo, in.Branch)
	if err != nil {
		return EffectiveResult{}, err
	}
	undone, err := gitrevert.Undone(repo, in.Commit, head)
	if err != nil {
		return EffectiveResult{}, fmt.Errorf("effective tree of %s on %s: %w", contract.ShortSHA(in.Commit), in.Branch, err)
	}
	res := EffectiveResult{Undone: undone, Head: head}
	if len(undone) == 0 {
		return res, nil
	}
	// Subtracting merges files line by line, which can take a while on
	// large generated files: heartbeats show it is alive, and deliver a
	// cancellation, which stops the merge at once.
	progress := startHeartbeat(ctx, a.HeartbeatEvery, fmt.Sprintf("effective tree of %s without %d reverted changes", contract.ShortSHA(in.Commit), len(undone)))
	defer progress.Stop()
	if _, err := gitrevert.Subtract(ctx, repo, in.Commit, undone); err != nil {
		var dep *gitrevert.DependsError
		if !errors.As(err, &dep) {
			return EffectiveResult{}, err
		}
		res.DependsOn, res.Conflicts = dep.Reverted, dep.Conflicts
	}
	return res, nil
}

// effectiveError turns a failed subtraction into an error a person can act
// on; a conflict will not resolve itself on retry.
func effectiveError(err error, stack string) error {
	var dep *gitrevert.DependsError
	if errors.As(err, &dep) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("stack %s: %s", stack, dep.Error()), ErrDependsOnReverted, nil)
	}
	return fmt.Errorf("effective tree for stack %s: %w", stack, err)
}
