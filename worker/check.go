package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/go-git/go-git/v5"
	"log/slog"
	"path"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gitrepo"
)

// CheckStacks refuses a configuration whose stack folders are missing, or
// hold no Pulumi.yaml, at the head of their branch: a typo in a path would
// otherwise turn every change into a silent no-op. A remote that cannot be
// reached now is not a configuration error: the check is skipped with a
// warning and each run checks its own commit.
func CheckStacks(ctx context.Context, cfg *config.Config, repos map[string]*gitrepo.Repo, logger *slog.Logger) error {
	var errs []error
	for _, r := range cfg.AllRepos() {
		if err := checkRepo(ctx, cfg, r, repos[r.Name], logger); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkRepo checks the stacks of one repository at its branch heads.
func checkRepo(ctx context.Context, cfg *config.Config, r config.Repo, cache *gitrepo.Repo, logger *slog.Logger) error {
	field := "repo"
	if r.Name != "" {
		field = fmt.Sprintf("repos (%s)", r.Name)
	}
	g, release, err := cache.Fetch(ctx)
	defer release()
	if gitrepo.IsAuthError(err) {
		return fmt.Errorf("%s.url %s refused the credentials: check %s.username_env and %s.password_env", field, r.URL, field, field)
	}
	if err != nil {
		logger.Warn("cannot check stack folders now; each run checks its commit", "repo", r.URL, "error", err)
		return nil
	}
	var errs []error
	for i, s := range cfg.Stacks {
		if s.Repo != r.Name {
			continue
		}
		branch := cfg.BranchOf(s)
		head, err := gitrepo.Head(g, branch)
		if err != nil {
			errs = append(errs, fmt.Errorf("stacks[%d] (%s): branch %s does not exist on %s: check %s.branch and stacks[].branch", i, s.Name, branch, r.URL, field))
			continue
		}
		if err := checkStack(g, head, branch, i, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkStack(g *git.Repository, head, branch string, i int, s config.Stack) error {
	at := fmt.Sprintf("stacks[%d] (%s).path %q", i, s.Name, s.Path)
	dir, err := gitrepo.IsDir(g, head, s.Path)
	if err != nil {
		return err
	}
	if !dir {
		return fmt.Errorf("%s: no such folder on %s at %.7s: fix the path", at, branch, head)
	}
	ok, err := gitrepo.HasFile(g, head, path.Join(s.Path, "Pulumi.yaml"))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: the folder has no Pulumi.yaml on %s at %.7s: point at the Pulumi project's folder", at, branch, head)
	}
	return nil
}
