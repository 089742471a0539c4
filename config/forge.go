package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Kinds of forge (repos[].forge.kind).
const (
	ForgeGitea  = "gitea" // Gitea and Forgejo
	ForgeGitHub = "github"
	ForgeGitLab = "gitlab"
)

// Forge is the forge a repository lives on, for previews of its pull
// requests (docs/pull-requests.md): commit statuses, one comment, and
// approvals, through the forge's API with a token of changeops' own.
type Forge struct {
	// Kind is gitea (also Forgejo), github or gitlab.
	Kind string `yaml:"kind"`
	// URL is the forge's root (https://gitea.example.com; for GitHub,
	// https://api.github.com or an Enterprise server's API).
	URL string `yaml:"url"`
	// Project is the repository on the forge, owner/name; default: the
	// path of the repository's url.
	Project string `yaml:"project"`
	// TokenEnv names the variable holding the forge token: it writes
	// statuses and comments, and reads pull requests and reviews.
	TokenEnv string `yaml:"token_env"`
	// ForkPreviews previews pull requests from forks too: their code runs
	// at preview, so they are off unless a repository turns them on.
	ForkPreviews bool `yaml:"fork_previews"`
}

func (f *Forge) applyDefaults(repoURL string) {
	if f.Project != "" || repoURL == "" {
		return
	}
	p := repoURL
	if u, err := url.Parse(repoURL); err == nil && u.Host != "" {
		p = u.Path
	} else if _, after, ok := strings.Cut(repoURL, ":"); ok && strings.Contains(repoURL, "@") {
		p = after // git@host:owner/name.git
	}
	f.Project = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
}

func (f *Forge) validate(at string, bad func(string, ...any)) {
	at += ".forge"
	if !slices.Contains([]string{ForgeGitea, ForgeGitHub, ForgeGitLab}, f.Kind) {
		bad("%s.kind %q is not a forge: use gitea (also for Forgejo), github or gitlab", at, f.Kind)
	}
	if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("%s.url %q is not an http(s) URL: give the forge's root, like https://gitea.example.com", at, f.URL)
	}
	if f.TokenEnv == "" {
		bad("%s.token_env is empty: name the variable holding the forge token changeops posts statuses and comments with", at)
	}
	if owner, name, ok := strings.Cut(f.Project, "/"); !ok || owner == "" || name == "" || (f.Kind != ForgeGitLab && strings.Contains(name, "/")) {
		bad("%s.project %q is not owner/name: set it to the repository's path on the forge", at, f.Project)
	}
}

// ForgeOf is a repository's forge; nil when it has none.
func (c *Config) ForgeOf(repo string) *Forge {
	r, ok := c.RepoByName(repo)
	if !ok {
		return nil
	}
	return r.Forge
}

// ForgeToken is the token of a repository's forge.
func (c *Config) ForgeToken(repo string) string {
	return c.Secrets.ForgeTokens[repo]
}

func forgeField(at string) string { return fmt.Sprintf("%s.forge.token_env", at) }
