package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gitrepo"
)

// CheckStacks refuses a configuration whose stack folders are missing, or
// hold no Pulumi.yaml, at the head of the tracked branch: a typo in a path
// would otherwise turn every change into a silent no-op. A remote that
// cannot be reached now is not a configuration error: the check is skipped
// with a warning and each run checks its own commit.
func CheckStacks(ctx context.Context, cfg *config.Config, repo *gitrepo.Repo, logger *slog.Logger) error {
	g, err := repo.Fetch(ctx)
	if gitrepo.IsAuthError(err) {
		return fmt.Errorf("repo.url %s refused the credentials: check repo.username_env and repo.password_env", cfg.Repo.URL)
	}
	if err != nil {
		logger.Warn("cannot check stack folders now; each run checks its commit", "repo", cfg.Repo.URL, "error", err)
		return nil
	}
	heads := map[string]string{}
	for _, b := range cfg.Branches() {
		head, err := gitrepo.Head(g, b)
		if err != nil {
			return fmt.Errorf("branch %s does not exist on %s: check repo.branch and stacks[].branch", b, cfg.Repo.URL)
		}
		heads[b] = head
	}
	var errs []error
	for i, s := range cfg.Stacks {
		branch := cfg.BranchOf(s)
		head := heads[branch]
		at := fmt.Sprintf("stacks[%d] (%s).path %q", i, s.Name, s.Path)
		dir, err := gitrepo.IsDir(g, head, s.Path)
		if err != nil {
			return err
		}
		if !dir {
			errs = append(errs, fmt.Errorf("%s: no such folder on %s at %.7s: fix the path", at, branch, head))
			continue
		}
		ok, err := gitrepo.HasFile(g, head, path.Join(s.Path, "Pulumi.yaml"))
		if err != nil {
			return err
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: the folder has no Pulumi.yaml on %s at %.7s: point at the Pulumi project's folder", at, branch, head))
		}
	}
	return errors.Join(errs...)
}
