package github

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/changeops/changeops/internal/forge"
	"github.com/changeops/changeops/internal/forge/forgetest"
)

// Contract tests: the adapter against GitHub's documented REST responses
// (the examples on docs.github.com, trimmed, in testdata/), served by a
// local server that also records what the adapter sent. They check the
// adapter reads and writes GitHub's documented shapes; they are not a
// substitute for a real GitHub (the end-to-end tests run a real Gitea).
func documented(t *testing.T) (*Repo, *forgetest.Server) {
	t.Helper()
	const repo = "GET /api/v3/repos/octocat/Hello-World"
	srv := forgetest.Serve(t, map[string]string{
		repo + "/pulls/1347":           "pull.json",
		repo + "/pulls/1347/reviews":   "reviews.json",
		"GET /api/v3/user":             "user.json",
		repo + "/issues/1347/comments": "comments.json",
		"PATCH /api/v3/repos/octocat/Hello-World/issues/comments/2":                                "comment.json",
		"POST /api/v3/repos/octocat/Hello-World/issues/1347/comments":                              "comment.json",
		"POST /api/v3/repos/octocat/Hello-World/statuses/6dcb09b5b57875f334f61aebed695e2e4193db5e": "status.json",
		repo + "/commits/e5bd3914e2e596debea16f433f57875b5b90bcd6/pulls":                           "commit_pulls.json",
	}, func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer t0ken" })
	r, err := New(srv.URL+"/api/v3", "t0ken", "octocat/Hello-World", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return r, srv
}

func TestGitHubContractPullRequest(t *testing.T) {
	r, _ := documented(t)
	pr, err := r.PullRequest(t.Context(), 1347)
	if err != nil {
		t.Fatal(err)
	}
	want := forge.PullRequest{Number: 1347, Title: "Amazing new feature", Author: "octocat",
		Head: "6dcb09b5b57875f334f61aebed695e2e4193db5e", HeadRef: "refs/pull/1347/head", Base: "master",
		Open: true, MergeCommit: "e5bd3914e2e596debea16f433f57875b5b90bcd6", URL: "https://github.com/octocat/Hello-World/pull/1347"}
	if pr != want {
		t.Fatalf("pull request = %+v\nwant %+v", pr, want)
	}
}

// A reviewer whose latest review requests changes has no approval left.
func TestGitHubContractApprovals(t *testing.T) {
	r, _ := documented(t)
	got, err := r.Approvals(t.Context(), 1347)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (forge.Approval{User: "octocat", Commit: "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091"}) {
		t.Fatalf("approvals = %+v, want octocat's only", got)
	}
}

// The comment edited is the token's user's, not one someone else planted
// with the marker.
func TestGitHubContractUpsertCommentEditsOnlyItsOwn(t *testing.T) {
	r, got := documented(t)
	if err := r.UpsertComment(t.Context(), 1347, "<!-- changeops:preview -->", "new body"); err != nil {
		t.Fatal(err)
	}
	last := got.Last()
	if last.Method != http.MethodPatch || last.Path != "/api/v3/repos/octocat/Hello-World/issues/comments/2" {
		t.Fatalf("last request %s %s, want PATCH of comment 2", last.Method, last.Path)
	}
	var body struct{ Body string }
	if err := json.Unmarshal([]byte(last.Body), &body); err != nil || body.Body != "new body" {
		t.Fatalf("edit body = %q, %v", last.Body, err)
	}
}

// A status description longer than GitHub's 140 characters is cut.
func TestGitHubContractStatus(t *testing.T) {
	r, got := documented(t)
	err := r.SetStatus(t.Context(), forge.Status{SHA: "6dcb09b5b57875f334f61aebed695e2e4193db5e", Context: "changeops/web",
		State: forge.StateFailure, Description: strings.Repeat("error ", 60)})
	if err != nil {
		t.Fatal(err)
	}
	last := got.Last()
	var st struct{ State, Description, Context string }
	if err := json.Unmarshal([]byte(last.Body), &st); err != nil {
		t.Fatal(err)
	}
	if last.Path != "/api/v3/repos/octocat/Hello-World/statuses/6dcb09b5b57875f334f61aebed695e2e4193db5e" ||
		st.State != "failure" || st.Context != "changeops/web" || len(st.Description) > 140 {
		t.Fatalf("status sent to %s: %+v (%d bytes of description)", last.Path, st, len(st.Description))
	}
}

func TestGitHubContractPullOfCommit(t *testing.T) {
	r, _ := documented(t)
	n, ok, err := r.PullOfCommit(t.Context(), "e5bd3914e2e596debea16f433f57875b5b90bcd6")
	if err != nil || !ok || n != 1347 {
		t.Fatalf("pull of the merge commit = %d, %v, %v; want #1347", n, ok, err)
	}
}
