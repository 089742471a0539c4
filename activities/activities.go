// Package activities is everything a change run does to the world: git,
// Pulumi, verification checks and notifications. Each activity is idempotent
// under retry, and long ones heartbeat. Failures caused by input (a commit
// that does not exist, a program that does not compile) are non-retryable
// application errors with a type from types.go; the rest is retried.
package activities

import (
	"net/http"
	"path/filepath"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/notify"
	"github.com/changeops/changeops/internal/pulumienv"
)

// Activities holds what the activities need; workflows call its methods
// through a nil *Activities so names stay typed.
type Activities struct {
	Config   *config.Config
	Git      *gitrepo.Repo
	Pulumi   pulumienv.Env
	Notifier notify.Notifier
	HTTP     *http.Client
	// HeartbeatEvery is how often long activities heartbeat.
	HeartbeatEvery time.Duration

	cache stackCache
}

// New builds the activities for cfg.
func New(cfg *config.Config, repo *gitrepo.Repo, env pulumienv.Env, n notify.Notifier) *Activities {
	return &Activities{
		Config:         cfg,
		Git:            repo,
		Pulumi:         env,
		Notifier:       n,
		HTTP:           &http.Client{Timeout: 10 * time.Second},
		HeartbeatEvery: 5 * time.Second,
	}
}

// workspace is where the tree of a commit is exported; each commit gets its
// own folder, shared by the stacks it touches.
func (a *Activities) workspace(sha string) string {
	return filepath.Join(a.Config.DataDir, "workspaces", sha)
}
