// Package github is the forge adapter for GitHub and GitHub Enterprise
// Server, through GitHub's maintained Go client (google/go-github).
package github

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	gh "github.com/google/go-github/v75/github"

	"github.com/changeops/changeops/internal/forge"
)

// GitHub's limits: an issue comment's body is at most 65,536 characters
// (counted here in bytes, which is stricter); a status description is cut
// at 140.
const (
	maxComment     = 65536
	maxDescription = 140
)

// Repo is one repository on GitHub.
type Repo struct {
	c           *gh.Client
	owner, name string

	mu sync.Mutex
	me string // the token's user: only its comments are edited
}

var _ forge.Forge = (*Repo)(nil)

// New is owner/name (project) on GitHub. apiURL is https://api.github.com,
// or an Enterprise server's API root (https://ghe.example.com/api/v3/).
func New(apiURL, token, project string, hc *http.Client) (*Repo, error) {
	owner, name, ok := strings.Cut(strings.Trim(project, "/"), "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("github project %q is not owner/name", project)
	}
	c := gh.NewClient(hc).WithAuthToken(token)
	if u := strings.TrimSuffix(apiURL, "/"); u != "" && u != "https://api.github.com" {
		var err error
		if c, err = c.WithEnterpriseURLs(u+"/", u+"/"); err != nil {
			return nil, fmt.Errorf("github API URL %q: %w", apiURL, err)
		}
	}
	return &Repo{c: c, owner: owner, name: name}, nil
}

func (r *Repo) PullRequest(ctx context.Context, number int) (forge.PullRequest, error) {
	pr, _, err := r.c.PullRequests.Get(ctx, r.owner, r.name, number)
	if err != nil {
		return forge.PullRequest{}, fmt.Errorf("read pull request #%d of %s/%s: %w", number, r.owner, r.name, err)
	}
	out := forge.PullRequest{
		Number:      pr.GetNumber(),
		Title:       forge.Bound(pr.GetTitle(), 200),
		Author:      forge.Bound(pr.GetUser().GetLogin(), 100),
		Head:        pr.GetHead().GetSHA(),
		HeadRef:     fmt.Sprintf("refs/pull/%d/head", pr.GetNumber()),
		Base:        pr.GetBase().GetRef(),
		Open:        pr.GetState() == "open",
		Merged:      pr.GetMerged(),
		MergeCommit: pr.GetMergeCommitSHA(),
		URL:         pr.GetHTMLURL(),
	}
	// A fork whose repository was deleted has no head repository.
	out.Fork = pr.GetHead().GetRepo() == nil || pr.GetHead().GetRepo().GetID() != pr.GetBase().GetRepo().GetID()
	return out, nil
}

func (r *Repo) SetStatus(ctx context.Context, s forge.Status) error {
	st := &gh.RepoStatus{
		State:       gh.Ptr(s.State),
		Description: gh.Ptr(forge.Bound(s.Description, maxDescription)),
		Context:     gh.Ptr(s.Context),
	}
	if s.TargetURL != "" {
		st.TargetURL = gh.Ptr(s.TargetURL)
	}
	if _, _, err := r.c.Repositories.CreateStatus(ctx, r.owner, r.name, s.SHA, st); err != nil {
		return fmt.Errorf("set status %s on %.7s in %s/%s: %w", s.Context, s.SHA, r.owner, r.name, err)
	}
	return nil
}

func (r *Repo) UpsertComment(ctx context.Context, number int, marker, body string) error {
	cm, err := r.ours(ctx, number, marker)
	if err != nil {
		return err
	}
	if cm != nil {
		if _, _, err := r.c.Issues.EditComment(ctx, r.owner, r.name, cm.GetID(), &gh.IssueComment{Body: gh.Ptr(body)}); err != nil {
			return fmt.Errorf("edit comment %d of #%d in %s/%s: %w", cm.GetID(), number, r.owner, r.name, err)
		}
		return nil
	}
	if _, _, err := r.c.Issues.CreateComment(ctx, r.owner, r.name, number, &gh.IssueComment{Body: gh.Ptr(body)}); err != nil {
		return fmt.Errorf("comment on #%d in %s/%s: %w", number, r.owner, r.name, err)
	}
	return nil
}

func (r *Repo) Comment(ctx context.Context, number int, marker string) (string, bool, error) {
	cm, err := r.ours(ctx, number, marker)
	if err != nil || cm == nil {
		return "", false, err
	}
	return cm.GetBody(), true, nil
}

// ours is changeops' comment starting with marker, nil when there is none.
func (r *Repo) ours(ctx context.Context, number int, marker string) (*gh.IssueComment, error) {
	me, err := r.user(ctx)
	if err != nil {
		return nil, err
	}
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		comments, resp, err := r.c.Issues.ListComments(ctx, r.owner, r.name, number, opts)
		if err != nil {
			return nil, fmt.Errorf("list comments of #%d in %s/%s: %w", number, r.owner, r.name, err)
		}
		for _, cm := range comments {
			// Only changeops' own comment: anyone can write the marker.
			if cm.GetUser().GetLogin() == me && strings.HasPrefix(cm.GetBody(), marker) {
				return cm, nil
			}
		}
		if resp.NextPage == 0 {
			return nil, nil
		}
		opts.Page = resp.NextPage
	}
}

func (r *Repo) user(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.me != "" {
		return r.me, nil
	}
	u, _, err := r.c.Users.Get(ctx, "")
	if err != nil {
		return "", fmt.Errorf("read the user of the GitHub token of %s/%s: %w", r.owner, r.name, err)
	}
	r.me = u.GetLogin()
	return r.me, nil
}

// Approvals are the users whose latest review approves: a later "changes
// requested" or a dismissal takes an approval back, as GitHub counts them.
func (r *Repo) Approvals(ctx context.Context, number int) ([]forge.Approval, error) {
	latest := map[string]*gh.PullRequestReview{}
	var order []string
	opts := &gh.ListOptions{PerPage: 100}
	for {
		reviews, resp, err := r.c.PullRequests.ListReviews(ctx, r.owner, r.name, number, opts)
		if err != nil {
			return nil, fmt.Errorf("list reviews of #%d in %s/%s: %w", number, r.owner, r.name, err)
		}
		for _, rv := range reviews { // oldest first
			login := rv.GetUser().GetLogin()
			if login == "" || rv.GetState() == "COMMENTED" || rv.GetState() == "PENDING" {
				continue
			}
			if _, ok := latest[login]; !ok {
				order = append(order, login)
			}
			latest[login] = rv
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	var out []forge.Approval
	for _, login := range order {
		if rv := latest[login]; rv.GetState() == "APPROVED" {
			out = append(out, forge.Approval{User: forge.Bound(login, 100), Commit: forge.Bound(rv.GetCommitID(), 64)})
		}
	}
	return out, nil
}

// PullOfCommit is the merged pull request whose merge commit is commit.
func (r *Repo) PullOfCommit(ctx context.Context, commit string) (int, bool, error) {
	prs, _, err := r.c.PullRequests.ListPullRequestsWithCommit(ctx, r.owner, r.name, commit, nil)
	if err != nil {
		return 0, false, fmt.Errorf("find the pull request of %.7s in %s/%s: %w", commit, r.owner, r.name, err)
	}
	for _, pr := range prs {
		if pr.GetMergeCommitSHA() == commit {
			return pr.GetNumber(), true, nil
		}
	}
	return 0, false, nil
}

func (r *Repo) MaxComment() int           { return maxComment }
func (r *Repo) MaxStatusDescription() int { return maxDescription }
