// Package forge is what changeops does on a forge (Gitea and Forgejo,
// GitHub, GitLab) about a pull request: read it, post a commit status per
// stack, keep one comment up to date, list its approvals. The adapters
// (forge/gitea, ...) speak each forge's API through its maintained client;
// this package holds what they share and imports nothing of the project.
// Everything read from a forge is untrusted text: Bound it before it
// reaches a payload, a log or a message.
package forge

import (
	"context"
	"strings"
	"unicode/utf8"
)

// Kinds of forge (repos[].forge.kind).
const (
	KindGitea  = "gitea" // Gitea and Forgejo
	KindGitHub = "github"
	KindGitLab = "gitlab"
)

// States of a commit status.
const (
	StatePending = "pending"
	StateSuccess = "success"
	StateFailure = "failure"
	StateError   = "error"
)

// PullRequest is what changeops needs of a pull request (a merge request
// on GitLab), as the forge's API says it now.
type PullRequest struct {
	Number int
	Title  string // bounded by the adapter
	Author string // the forge login of who opened it
	// Head is the commit at the tip of the pull request; HeadRef is the
	// ref of the base repository that holds it (refs/pull/N/head), which
	// is fetched also for pull requests from forks.
	Head    string
	HeadRef string
	// Base is the branch it merges into.
	Base string
	// Fork says the head lives in another repository than the base.
	Fork   bool
	Open   bool
	Merged bool
	// MergeCommit is the commit the merge put on Base, once merged.
	MergeCommit string
	URL         string
}

// Status is one commit status: Context names it ("changeops/web-prod");
// a later status of the same context replaces it on the forge.
type Status struct {
	SHA         string
	Context     string
	State       string
	Description string
	TargetURL   string
}

// Approval is one reviewer's approval of a pull request.
type Approval struct {
	User   string // forge login
	Commit string // the head it approved, where the forge says
	// Stale: the pull request changed since (the forge says so).
	Stale bool
}

// Forge is one repository on a forge.
type Forge interface {
	PullRequest(ctx context.Context, number int) (PullRequest, error)
	SetStatus(ctx context.Context, s Status) error
	// UpsertComment keeps one comment of changeops' on the pull request:
	// it edits the comment changeops posted before that starts with
	// marker, or posts one.
	UpsertComment(ctx context.Context, number int, marker, body string) error
	Approvals(ctx context.Context, number int) ([]Approval, error)
	// PullOfCommit is the pull request whose merge put commit on its
	// branch; found is false for a commit pushed without one.
	PullOfCommit(ctx context.Context, commit string) (number int, found bool, err error)
	// Comment is changeops' own comment that starts with marker (only the
	// token's user's: anyone can write a marker).
	Comment(ctx context.Context, number int, marker string) (body string, found bool, err error)
	// MaxComment is the longest comment body the forge accepts, in bytes.
	MaxComment() int
	// MaxStatusDescription is the longest status description it accepts.
	MaxStatusDescription() int
}

// Bound cuts s to at most n bytes on a rune boundary, marking a cut with
// "…", and drops control characters other than newlines and tabs.
func Bound(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := max(n-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
