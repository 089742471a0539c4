// Package gitlab is the forge adapter for GitLab (gitlab.com or
// self-managed), through GitLab's maintained Go client
// (gitlab.com/gitlab-org/api/client-go). A merge request is a pull request
// here.
package gitlab

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/changeops/changeops/internal/forge"
)

// GitLab's limits: a note's body is at most 1,000,000 characters; a
// commit status description is kept to 255 here (GitLab's column).
const (
	maxComment     = 1_000_000
	maxDescription = 255
)

// Repo is one project on GitLab.
type Repo struct {
	c       *gl.Client
	project string // group/name, or group/subgroup/name

	mu sync.Mutex
	me string
}

var _ forge.Forge = (*Repo)(nil)

// New is project (its path) on the GitLab at url (https://gitlab.com).
func New(url, token, project string, hc *http.Client) (*Repo, error) {
	project = strings.Trim(project, "/")
	if !strings.Contains(project, "/") {
		return nil, fmt.Errorf("gitlab project %q is not group/name", project)
	}
	c, err := gl.NewClient(token, gl.WithBaseURL(strings.TrimSuffix(url, "/")+"/api/v4"), gl.WithHTTPClient(hc))
	if err != nil {
		return nil, fmt.Errorf("gitlab client for %s: %w", url, err)
	}
	return &Repo{c: c, project: project}, nil
}

func (r *Repo) PullRequest(ctx context.Context, number int) (forge.PullRequest, error) {
	mr, _, err := r.c.MergeRequests.GetMergeRequest(r.project, int64(number), nil, gl.WithContext(ctx))
	if err != nil {
		return forge.PullRequest{}, fmt.Errorf("read merge request !%d of %s: %w", number, r.project, err)
	}
	out := forge.PullRequest{
		Number:  int(mr.IID),
		Title:   forge.Bound(mr.Title, 200),
		Head:    mr.SHA,
		HeadRef: fmt.Sprintf("refs/merge-requests/%d/head", mr.IID),
		Base:    mr.TargetBranch,
		Fork:    mr.SourceProjectID != mr.TargetProjectID,
		Open:    mr.State == "opened",
		Merged:  mr.State == "merged",
		URL:     mr.WebURL,
	}
	if mr.Author != nil {
		out.Author = forge.Bound(mr.Author.Username, 100)
	}
	out.MergeCommit = mr.MergeCommitSHA
	if out.MergeCommit == "" {
		out.MergeCommit = mr.SquashCommitSHA
	}
	return out, nil
}

// states maps commit status states to GitLab's.
var states = map[string]gl.BuildStateValue{
	forge.StatePending: gl.Pending, forge.StateSuccess: gl.Success, forge.StateFailure: gl.Failed, forge.StateError: gl.Failed,
}

func (r *Repo) SetStatus(ctx context.Context, s forge.Status) error {
	opt := &gl.SetCommitStatusOptions{
		State:       states[s.State],
		Name:        gl.Ptr(s.Context),
		Description: gl.Ptr(forge.Bound(s.Description, maxDescription)),
	}
	if s.TargetURL != "" {
		opt.TargetURL = gl.Ptr(s.TargetURL)
	}
	if _, _, err := r.c.Commits.SetCommitStatus(r.project, s.SHA, opt, gl.WithContext(ctx)); err != nil {
		return fmt.Errorf("set status %s on %.7s in %s: %w", s.Context, s.SHA, r.project, err)
	}
	return nil
}

func (r *Repo) UpsertComment(ctx context.Context, number int, marker, body string) error {
	n, err := r.ours(ctx, number, marker)
	if err != nil {
		return err
	}
	if n != nil {
		if _, _, err := r.c.Notes.UpdateMergeRequestNote(r.project, int64(number), n.ID, &gl.UpdateMergeRequestNoteOptions{Body: gl.Ptr(body)}, gl.WithContext(ctx)); err != nil {
			return fmt.Errorf("edit note %d of !%d in %s: %w", n.ID, number, r.project, err)
		}
		return nil
	}
	if _, _, err := r.c.Notes.CreateMergeRequestNote(r.project, int64(number), &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr(body)}, gl.WithContext(ctx)); err != nil {
		return fmt.Errorf("comment on !%d in %s: %w", number, r.project, err)
	}
	return nil
}

func (r *Repo) Comment(ctx context.Context, number int, marker string) (string, bool, error) {
	n, err := r.ours(ctx, number, marker)
	if err != nil || n == nil {
		return "", false, err
	}
	return n.Body, true, nil
}

// ours is changeops' note starting with marker, nil when there is none.
func (r *Repo) ours(ctx context.Context, number int, marker string) (*gl.Note, error) {
	me, err := r.user(ctx)
	if err != nil {
		return nil, err
	}
	opt := &gl.ListMergeRequestNotesOptions{}
	opt.PerPage = 100
	for {
		notes, resp, err := r.c.Notes.ListMergeRequestNotes(r.project, int64(number), opt, gl.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list notes of !%d in %s: %w", number, r.project, err)
		}
		for _, n := range notes {
			// Only changeops' own note: anyone can write the marker.
			if !n.System && n.Author.Username == me && strings.HasPrefix(n.Body, marker) {
				return n, nil
			}
		}
		if resp.NextPage == 0 {
			return nil, nil
		}
		opt.Page = resp.NextPage
	}
}

func (r *Repo) user(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.me != "" {
		return r.me, nil
	}
	u, _, err := r.c.Users.CurrentUser(gl.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("read the user of the GitLab token of %s: %w", r.project, err)
	}
	r.me = u.Username
	return r.me, nil
}

// Approvals are the merge request's approvers now. GitLab names no commit
// per approval; a project that resets approvals on push (its setting)
// drops approvals of older heads.
func (r *Repo) Approvals(ctx context.Context, number int) ([]forge.Approval, error) {
	a, _, err := r.c.MergeRequests.GetMergeRequestApprovals(r.project, int64(number), gl.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read approvals of !%d in %s: %w", number, r.project, err)
	}
	var out []forge.Approval
	for _, u := range a.ApprovedBy {
		if u != nil && u.User != nil {
			out = append(out, forge.Approval{User: forge.Bound(u.User.Username, 100)})
		}
	}
	return out, nil
}

// PullOfCommit is the merged merge request whose merge (or squash) commit
// is commit.
func (r *Repo) PullOfCommit(ctx context.Context, commit string) (int, bool, error) {
	mrs, _, err := r.c.Commits.ListMergeRequestsByCommit(r.project, commit, gl.WithContext(ctx))
	if err != nil {
		return 0, false, fmt.Errorf("find the merge request of %.7s in %s: %w", commit, r.project, err)
	}
	for _, mr := range mrs {
		if mr.MergeCommitSHA == commit || mr.SquashCommitSHA == commit {
			return int(mr.IID), true, nil
		}
	}
	return 0, false, nil
}

func (r *Repo) MaxComment() int           { return maxComment }
func (r *Repo) MaxStatusDescription() int { return maxDescription }
