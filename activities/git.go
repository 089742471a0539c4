package activities

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/gitrevert"
)

// maxCommitsPerPoll bounds one poll's result; a longer backlog is worked
// through oldest first over several polls.
const maxCommitsPerPoll = 50

// Inspect fetches the commit, lists what it changed against its first parent
// and maps the paths to configured stacks.
func (a *Activities) Inspect(ctx context.Context, in InspectInput) (InspectResult, error) {
	cache, err := a.git(in.Repo)
	if err != nil {
		return InspectResult{}, err
	}
	repo, release, err := cache.EnsureCommit(ctx, in.Commit)
	defer func() { release() }() // onBranch may replace release
	if err != nil {
		return InspectResult{}, gitError(err, in.Commit, cache.URL())
	}
	sha, err := gitrepo.Resolve(repo, in.Commit)
	if err != nil {
		return InspectResult{}, gitError(err, in.Commit, cache.URL())
	}
	if repo, err = a.onBranch(ctx, cache, repo, &release, in.Branch, sha); err != nil {
		return InspectResult{}, err
	}
	info, err := gitrepo.Lookup(repo, sha)
	if err != nil {
		return InspectResult{}, gitError(err, in.Commit, cache.URL())
	}
	paths, err := gitrepo.ChangedPaths(info.Commit)
	if err != nil {
		return InspectResult{}, err
	}
	stacks := a.Config.StacksTouched(in.Repo, in.Branch, paths)
	count := len(paths)
	if count > MaxChangedPaths {
		paths = paths[:MaxChangedPaths]
	}
	for _, s := range stacks {
		ok, err := gitrepo.HasFile(repo, info.SHA, path.Join(s.Path, "Pulumi.yaml"))
		if err != nil {
			return InspectResult{}, fmt.Errorf("inspect stack %s at %s: %w", s.Name, contract.ShortSHA(info.SHA), err)
		}
		if !ok {
			return InspectResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("stack %s: %s/Pulumi.yaml does not exist at commit %s: fix stacks[].path in the config or add the Pulumi project", s.Name, s.Path, contract.ShortSHA(info.SHA)),
				ErrStackInvalid, nil)
		}
	}
	return InspectResult{
		Commit:       commitOf(info),
		ChangedPaths: paths,
		ChangedCount: count,
		Stacks:       stacks,
		Forge:        a.Config.ForgeOf(in.Repo) != nil,
	}, nil
}

// Commits reads who wrote each of a batch's commits, for the approval that
// covers the batch (docs/batching.md#approvals): each must be on the
// branch, since an approval shown a commit from elsewhere would be
// misled. Strings are bounded as Inspect's are.
func (a *Activities) Commits(ctx context.Context, in CommitsInput) ([]Commit, error) {
	if len(in.Commits) == 0 {
		return nil, nil
	}
	if len(in.Commits) > contract.MaxBehind+1 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%d commits asked for, more than a batch holds (%d)", len(in.Commits), contract.MaxBehind+1), ErrStackInvalid, nil)
	}
	cache, err := a.git(in.Repo)
	if err != nil {
		return nil, err
	}
	// The newest holds every other one in its history.
	newest := in.Commits[len(in.Commits)-1]
	repo, release, err := cache.EnsureCommit(ctx, newest)
	defer func() { release() }() // onBranch may replace release
	if err != nil {
		return nil, gitError(err, newest, cache.URL())
	}
	out := make([]Commit, 0, len(in.Commits))
	for _, c := range in.Commits {
		sha, err := gitrepo.Resolve(repo, c)
		if err != nil {
			return nil, gitError(err, c, cache.URL())
		}
		if repo, err = a.onBranch(ctx, cache, repo, &release, in.Branch, sha); err != nil {
			return nil, err
		}
		info, err := gitrepo.Lookup(repo, sha)
		if err != nil {
			return nil, gitError(err, c, cache.URL())
		}
		out = append(out, commitOf(info))
	}
	return out, nil
}

// onBranch refuses a commit that is not on the tracked branch: only merged
// commits are deployed, whoever starts the run (the watcher, a webhook,
// `changeops start`). A commit the cached branch does not contain is
// checked once more after a fetch, since the cache may predate the merge.
// The repository handed back replaces repo; *release releases it.
func (a *Activities) onBranch(ctx context.Context, cache *gitrepo.Repo, repo *git.Repository, release *func(), branch, sha string) (*git.Repository, error) {
	ok, head, err := gitrepo.OnBranch(repo, branch, sha)
	if err == nil && !ok {
		(*release)()
		repo, *release, err = cache.Fetch(ctx)
		if err != nil {
			return nil, gitError(err, sha, cache.URL())
		}
		ok, head, err = gitrepo.OnBranch(repo, branch, sha)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			(&gitrepo.NotOnBranchError{SHA: sha, Branch: branch, URL: cache.URL(), Head: head}).Error(),
			ErrNotOnBranch, nil)
	}
	return repo, nil
}

// deployable refuses to run the engine on a commit, or a tree with changes
// subtracted from it, that the branch does not vouch for. Which commit an
// activity deploys comes from the run's input, and that is only as
// trustworthy as whoever could write it: a queue's grant or release, or a
// workflow started by hand, are Temporal signals and inputs, not git. So
// every Pulumi activity checks, against git itself, that the commit is on
// the branch's first-parent chain and that each subtracted change was
// reverted on the branch after it.
func (a *Activities) deployable(ctx context.Context, cache *gitrepo.Repo, repo *git.Repository, release *func(), branch, sha string, undone []string) (*git.Repository, error) {
	repo, err := a.onBranch(ctx, cache, repo, release, branch, sha)
	if err != nil || len(undone) == 0 {
		return repo, err
	}
	head, err := gitrepo.Head(repo, branch)
	if err != nil {
		return nil, err
	}
	later, _, err := gitrepo.FirstParentsSince(repo, head, sha, 0)
	if err != nil {
		return nil, err
	}
	var reverts []gitrevert.Reverted
	for _, l := range later {
		c, err := repo.CommitObject(plumbing.NewHash(l))
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", contract.ShortSHA(l), err)
		}
		reverts = append(reverts, gitrevert.Reverts(c.Message)...)
	}
	for _, u := range undone {
		if !slices.ContainsFunc(reverts, func(r gitrevert.Reverted) bool { return r.Matches(u) }) {
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("change %s is to be subtracted from %s, but no commit on branch %s after it reverts it: refused", contract.ShortSHA(u), contract.ShortSHA(sha), branch),
				ErrNotOnBranch, nil)
		}
	}
	return repo, nil
}

// PollBranch fetches and lists the first-parent commits after LastSeen.
func (a *Activities) PollBranch(ctx context.Context, in PollInput) (PollResult, error) {
	cfg, ok := a.Config.RepoByName(in.Repo)
	cache, err := a.git(in.Repo)
	if !ok || err != nil {
		return PollResult{}, err
	}
	res := PollResult{
		PollInterval: cfg.PollInterval.D(),
		Initial:      cfg.Initial,
		OnRewrite:    cfg.OnRewrite,
	}
	repo, release, err := cache.Fetch(ctx)
	defer release()
	if err != nil {
		return res, gitError(err, "", cache.URL())
	}
	head, err := gitrepo.Head(repo, in.Branch)
	if err != nil {
		return res, err
	}
	res.Head = head
	if in.LastSeen == "" || in.LastSeen == head {
		return res, nil // first poll: the head is the baseline
	}
	commits, found, err := gitrepo.FirstParentsSince(repo, head, in.LastSeen, maxCommitsPerPoll)
	if err != nil {
		return res, err
	}
	res.NewCommits = commits
	res.Rewritten = !found
	for _, sha := range commits {
		info, err := gitrepo.Lookup(repo, sha)
		if err != nil {
			return res, fmt.Errorf("read commit %s: %w", contract.ShortSHA(sha), err)
		}
		paths, err := gitrepo.ChangedPaths(info.Commit)
		if err != nil {
			return res, err
		}
		var names []string
		for _, s := range a.Config.StacksTouched(in.Repo, in.Branch, paths) {
			names = append(names, s.Name)
		}
		res.Stacks = append(res.Stacks, names)
		res.Commits = append(res.Commits, commitOf(info))
	}
	return res, nil
}

// commitOf is a commit as runs record it.
func commitOf(info *gitrepo.CommitInfo) Commit {
	return Commit{
		SHA:         info.SHA,
		Parent:      info.Parent,
		Subject:     info.Subject,
		AuthorName:  info.AuthorName,
		AuthorEmail: info.AuthorEmail,
		// Bounded like the author's: both come from the commit.
		CommitterName:  info.CommitterName,
		CommitterEmail: info.CommitterEmail,
		When:           info.Commit.Author.When.UTC(),
	}
}

func gitError(err error, sha, url string) error {
	switch {
	case errors.Is(err, gitrepo.ErrCommitNotFound):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("commit %s not found on %s: check the SHA and that it was pushed", sha, url),
			ErrCommitNotFound, nil)
	case gitrepo.IsAuthError(err):
		// Retried: a rotated token is fixed without losing the change.
		return temporal.NewApplicationError(
			fmt.Sprintf("%s refused our credentials: check repo.username_env and repo.password_env", url),
			ErrGitAuth)
	}
	return err
}
