// Package activities is everything a change run does to the world: git,
// Pulumi, verification checks and notifications. Each activity is idempotent
// under retry, and long ones heartbeat. Failures caused by input (a commit
// that does not exist, a program that does not compile) are non-retryable
// application errors with a type from types.go; the rest is retried.
package activities

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/forge"
	"github.com/changeops/changeops/internal/forge/gitea"
	"github.com/changeops/changeops/internal/forge/github"
	"github.com/changeops/changeops/internal/forge/gitlab"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/notify"
	"github.com/changeops/changeops/internal/pulumienv"
)

// Activities holds what the activities need; workflows call its methods
// through a nil *Activities so names stay typed.
type Activities struct {
	Config *config.Config
	// Repos are the cached clones, by repos entry name ("" the repo block).
	Repos    map[string]*gitrepo.Repo
	Pulumi   pulumienv.Env
	Notifier notify.Notifier
	HTTP     *http.Client
	// Temporal answers visibility queries (a stack's last good commit).
	Temporal client.Client
	// Forges are the repositories' forges, by repos entry name, for
	// previews of pull requests (OpenForges).
	Forges map[string]forge.Forge
	// HeartbeatEvery is how often long activities heartbeat.
	HeartbeatEvery time.Duration
	// QueueProbe is how often a stack's queue checks that the run holding
	// it still runs (given to queues this worker starts).
	QueueProbe time.Duration

	cache stackCache
	// beforePush, in tests, runs between building a revert and pushing it.
	beforePush func(attempt int)
	// PauseAt, when set, is called at named points of the activities
	// (PauseAfterRevertPush); fault-injection tests make it block so that they can
	// kill the worker exactly there. Nil in production.
	PauseAt func(ctx context.Context, point string)
}

// PauseAfterRevertPush: the revert commit is on the remote, and the Revert
// activity has not returned yet.
const PauseAfterRevertPush = "after-revert-push"

func (a *Activities) pause(ctx context.Context, point string) {
	if a.PauseAt != nil {
		a.PauseAt(ctx, point)
	}
}

// New builds the activities for cfg.
func New(cfg *config.Config, repos map[string]*gitrepo.Repo, env pulumienv.Env, n notify.Notifier) *Activities {
	return &Activities{
		Config:         cfg,
		Repos:          repos,
		Pulumi:         env,
		Notifier:       n,
		HTTP:           &http.Client{Timeout: 10 * time.Second},
		HeartbeatEvery: 5 * time.Second,
		QueueProbe:     time.Minute,
	}
}

// OpenRepos makes the cached clone of every repository in cfg; nothing
// touches the disk or network until first use.
func OpenRepos(cfg *config.Config) map[string]*gitrepo.Repo {
	repos := map[string]*gitrepo.Repo{}
	for _, r := range cfg.AllRepos() {
		dir := "repo.git" // the repo block's cache keeps its first name
		if r.Name != "" {
			dir = r.Name + ".git"
		}
		creds := cfg.GitCreds(r.Name)
		repos[r.Name] = gitrepo.New(gitrepo.Options{
			URL: r.URL, Dir: filepath.Join(cfg.DataDir, "git", dir),
			Username: creds.Username, Password: creds.Password,
		})
	}
	return repos
}

// OpenForges makes the client of every repository's forge in cfg; nothing
// touches the network until first use.
func OpenForges(cfg *config.Config, hc *http.Client) (map[string]forge.Forge, error) {
	out := map[string]forge.Forge{}
	for _, r := range cfg.AllRepos() {
		if r.Forge == nil {
			continue
		}
		f, err := openForge(r.Forge, cfg.ForgeToken(r.Name), hc)
		if err != nil {
			return nil, fmt.Errorf("repository %q: %w", r.Name, err)
		}
		out[r.Name] = f
	}
	return out, nil
}

func openForge(f *config.Forge, token string, hc *http.Client) (forge.Forge, error) {
	switch f.Kind {
	case config.ForgeGitea:
		return gitea.New(f.URL, token, f.Project, hc)
	case config.ForgeGitHub:
		return github.New(f.URL, token, f.Project, hc)
	case config.ForgeGitLab:
		return gitlab.New(f.URL, token, f.Project, hc)
	}
	return nil, fmt.Errorf("forge kind %q has no adapter", f.Kind)
}

// git returns a repository's cache.
func (a *Activities) git(name string) (*gitrepo.Repo, error) {
	r, ok := a.Repos[name]
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("repository %q is not in the configuration (repos[].name)", name), ErrStackInvalid, nil)
	}
	return r, nil
}

// workspace is where the tree of a commit is exported; each commit gets its
// own folder, shared by the stacks it touches.
func (a *Activities) workspace(repo, sha string) string {
	return filepath.Join(a.Config.DataDir, "workspaces", repo, sha)
}
