// Package gitea is the forge adapter for Gitea and Forgejo, through Gitea's
// maintained Go client (code.gitea.io/sdk/gitea).
package gitea

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	sdk "code.gitea.io/sdk/gitea"

	"github.com/changeops/changeops/internal/forge"
)

// Limits Gitea puts on what it stores: a comment is a TEXT column (64 KiB
// on MySQL, the smallest of its databases); a status description is
// VARCHAR(255).
const (
	maxComment     = 65535
	maxDescription = 255
)

// Repo is one repository on a Gitea or Forgejo server.
type Repo struct {
	url, token  string
	owner, name string
	http        *http.Client

	mu sync.Mutex
	me string // the token's user, found once: only its comments are edited
}

var _ forge.Forge = (*Repo)(nil)

// New is the repository owner/name on the server at url (its root, as
// https://gitea.example.com), with an access token that may write statuses
// and comments.
func New(url, token, project string, hc *http.Client) (*Repo, error) {
	owner, name, ok := strings.Cut(strings.Trim(project, "/"), "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("gitea project %q is not owner/name", project)
	}
	return &Repo{url: strings.TrimSuffix(url, "/"), token: token, owner: owner, name: name, http: hc}, nil
}

// client is a client for one call: the SDK's client carries its context.
func (r *Repo) client(ctx context.Context) (*sdk.Client, error) {
	// SetGiteaVersion("") skips the version probe each client would make.
	c, err := sdk.NewClient(r.url, sdk.SetToken(r.token), sdk.SetHTTPClient(r.http), sdk.SetContext(ctx), sdk.SetGiteaVersion(""))
	if err != nil {
		return nil, fmt.Errorf("gitea client for %s: %w", r.url, err)
	}
	return c, nil
}

func (r *Repo) PullRequest(ctx context.Context, number int) (forge.PullRequest, error) {
	c, err := r.client(ctx)
	if err != nil {
		return forge.PullRequest{}, err
	}
	pr, _, err := c.GetPullRequest(r.owner, r.name, int64(number))
	if err != nil {
		return forge.PullRequest{}, fmt.Errorf("read pull request #%d of %s/%s: %w", number, r.owner, r.name, err)
	}
	if pr.Head == nil || pr.Base == nil {
		return forge.PullRequest{}, fmt.Errorf("pull request #%d of %s/%s: the forge sent no head or base", number, r.owner, r.name)
	}
	out := forge.PullRequest{
		Number:  int(pr.Index),
		Title:   forge.Bound(pr.Title, 200),
		Head:    pr.Head.Sha,
		HeadRef: fmt.Sprintf("refs/pull/%d/head", pr.Index),
		Base:    pr.Base.Ref,
		Fork:    pr.Head.RepoID != pr.Base.RepoID,
		Open:    pr.State == sdk.StateOpen,
		Merged:  pr.HasMerged,
		URL:     pr.HTMLURL,
	}
	if pr.Poster != nil {
		out.Author = forge.Bound(pr.Poster.UserName, 100)
	}
	if pr.MergedCommitID != nil {
		out.MergeCommit = *pr.MergedCommitID
	}
	return out, nil
}

func (r *Repo) SetStatus(ctx context.Context, s forge.Status) error {
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.CreateStatus(r.owner, r.name, s.SHA, sdk.CreateStatusOption{
		State:       sdk.StatusState(s.State),
		TargetURL:   s.TargetURL,
		Description: forge.Bound(s.Description, maxDescription),
		Context:     s.Context,
	})
	if err != nil {
		return fmt.Errorf("set status %s on %.7s in %s/%s: %w", s.Context, s.SHA, r.owner, r.name, err)
	}
	return nil
}

func (r *Repo) UpsertComment(ctx context.Context, number int, marker, body string) error {
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	cm, err := r.ours(c, number, marker)
	if err != nil {
		return err
	}
	if cm != nil {
		if _, _, err := c.EditIssueComment(r.owner, r.name, cm.ID, sdk.EditIssueCommentOption{Body: body}); err != nil {
			return fmt.Errorf("edit comment %d of #%d in %s/%s: %w", cm.ID, number, r.owner, r.name, err)
		}
		return nil
	}
	if _, _, err := c.CreateIssueComment(r.owner, r.name, int64(number), sdk.CreateIssueCommentOption{Body: body}); err != nil {
		return fmt.Errorf("comment on #%d in %s/%s: %w", number, r.owner, r.name, err)
	}
	return nil
}

func (r *Repo) Comment(ctx context.Context, number int, marker string) (string, bool, error) {
	c, err := r.client(ctx)
	if err != nil {
		return "", false, err
	}
	cm, err := r.ours(c, number, marker)
	if err != nil || cm == nil {
		return "", false, err
	}
	return cm.Body, true, nil
}

// ours is changeops' comment on the pull request that starts with marker;
// nil when there is none.
func (r *Repo) ours(c *sdk.Client, number int, marker string) (*sdk.Comment, error) {
	me, err := r.user(c)
	if err != nil {
		return nil, err
	}
	comments, _, err := c.ListIssueComments(r.owner, r.name, int64(number), sdk.ListIssueCommentOptions{})
	if err != nil {
		return nil, fmt.Errorf("list comments of #%d in %s/%s: %w", number, r.owner, r.name, err)
	}
	for _, cm := range comments {
		// Only changeops' own comment: anyone can write the marker.
		if cm.Poster != nil && cm.Poster.UserName == me && strings.HasPrefix(cm.Body, marker) {
			return cm, nil
		}
	}
	return nil, nil
}

func (r *Repo) PullOfCommit(ctx context.Context, commit string) (int, bool, error) {
	c, err := r.client(ctx)
	if err != nil {
		return 0, false, err
	}
	pr, resp, err := c.GetCommitPullRequest(r.owner, r.name, commit)
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("find the pull request of %.7s in %s/%s: %w", commit, r.owner, r.name, err)
	}
	return int(pr.Index), true, nil
}

// user is the login the token belongs to.
func (r *Repo) user(c *sdk.Client) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.me != "" {
		return r.me, nil
	}
	u, _, err := c.GetMyUserInfo()
	if err != nil {
		return "", fmt.Errorf("read the user of the forge token of %s/%s: %w", r.owner, r.name, err)
	}
	r.me = u.UserName
	return r.me, nil
}

func (r *Repo) Approvals(ctx context.Context, number int) ([]forge.Approval, error) {
	c, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	reviews, _, err := c.ListPullReviews(r.owner, r.name, int64(number), sdk.ListPullReviewsOptions{})
	if err != nil {
		return nil, fmt.Errorf("list reviews of #%d in %s/%s: %w", number, r.owner, r.name, err)
	}
	var out []forge.Approval
	for _, rv := range reviews {
		if rv.State != sdk.ReviewStateApproved || rv.Dismissed || rv.Reviewer == nil {
			continue
		}
		out = append(out, forge.Approval{User: forge.Bound(rv.Reviewer.UserName, 100), Commit: forge.Bound(rv.CommitID, 64), Stale: rv.Stale})
	}
	return out, nil
}

func (r *Repo) MaxComment() int           { return maxComment }
func (r *Repo) MaxStatusDescription() int { return maxDescription }
