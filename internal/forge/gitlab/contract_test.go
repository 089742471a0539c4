package gitlab

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/changeops/changeops/internal/forge"
	"github.com/changeops/changeops/internal/forge/forgetest"
)

// Contract tests: the adapter against GitLab's documented REST responses
// (the examples of docs.gitlab.com/api, trimmed, in testdata/), served by
// a local server that also records what the adapter sent. They check the
// documented shapes; they are not a substitute for a real GitLab.
func documented(t *testing.T) (*Repo, *forgetest.Server) {
	t.Helper()
	// The client escapes the project's path (%2F, %2E); routes are
	// decoded paths.
	const project = "/api/v4/projects/marcel.amirault/test-project"
	srv := forgetest.Serve(t, map[string]string{
		"GET " + project + "/merge_requests/133":                                                         "merge_request.json",
		"GET " + project + "/merge_requests/133/approvals":                                               "approvals.json",
		"GET " + project + "/merge_requests/133/notes":                                                   "notes.json",
		"PUT " + project + "/merge_requests/133/notes/306":                                               "note.json",
		"POST " + project + "/merge_requests/133/notes":                                                  "note.json",
		"POST " + project + "/statuses/e82eb4a098e32c796079ca3915e07487fc4db24c":                         "status.json",
		"GET " + project + "/repository/commits/2e5e2b30e4c3f1c8f37c88f1bb9b3c1e0a1e8c1d/merge_requests": "commit_merge_requests.json",
		"GET /api/v4/user": "user.json",
	}, func(r *http.Request) bool { return r.Header.Get("Private-Token") == "t0ken" })
	r, err := New(srv.URL, "t0ken", "marcel.amirault/test-project", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return r, srv
}

func TestGitLabContractMergeRequest(t *testing.T) {
	r, _ := documented(t)
	pr, err := r.PullRequest(t.Context(), 133)
	if err != nil {
		t.Fatal(err)
	}
	want := forge.PullRequest{Number: 133, Title: "Manual job rules", Author: "marcel.amirault",
		Head: "e82eb4a098e32c796079ca3915e07487fc4db24c", HeadRef: "refs/merge-requests/133/head", Base: "master",
		Open: true, URL: "https://gitlab.com/marcel.amirault/test-project/-/merge_requests/133"}
	if pr != want {
		t.Fatalf("merge request = %+v\nwant %+v", pr, want)
	}
}

func TestGitLabContractApprovals(t *testing.T) {
	r, _ := documented(t)
	got, err := r.Approvals(t.Context(), 133)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].User != "root" {
		t.Fatalf("approvals = %+v, want root's", got)
	}
}

// The note edited is the token's user's, not a system note nor one someone
// else planted with the marker.
func TestGitLabContractUpsertCommentEditsOnlyItsOwn(t *testing.T) {
	r, got := documented(t)
	if err := r.UpsertComment(t.Context(), 133, "<!-- changeops:preview -->", "new body"); err != nil {
		t.Fatal(err)
	}
	last := got.Last()
	if last.Method != http.MethodPut || !strings.HasSuffix(last.Path, "/merge_requests/133/notes/306") {
		t.Fatalf("last request %s %s, want PUT of note 306", last.Method, last.Path)
	}
	var body struct{ Body string }
	if err := json.Unmarshal([]byte(last.Body), &body); err != nil || body.Body != "new body" {
		t.Fatalf("edit body = %q, %v", last.Body, err)
	}
}

// A failure is GitLab's "failed", named by the status's context.
func TestGitLabContractStatus(t *testing.T) {
	r, got := documented(t)
	err := r.SetStatus(t.Context(), forge.Status{SHA: "e82eb4a098e32c796079ca3915e07487fc4db24c", Context: "changeops/web",
		State: forge.StateFailure, Description: strings.Repeat("error ", 60)})
	if err != nil {
		t.Fatal(err)
	}
	last := got.Last()
	var st struct{ State, Name, Description string }
	if err := json.Unmarshal([]byte(last.Body), &st); err != nil {
		t.Fatalf("status body %q: %v", last.Body, err)
	}
	if st.State != "failed" || st.Name != "changeops/web" || len(st.Description) > 255 {
		t.Fatalf("status sent: %+v (%d bytes of description)", st, len(st.Description))
	}
}

func TestGitLabContractPullOfCommit(t *testing.T) {
	r, _ := documented(t)
	n, ok, err := r.PullOfCommit(t.Context(), "2e5e2b30e4c3f1c8f37c88f1bb9b3c1e0a1e8c1d")
	if err != nil || !ok || n != 1 {
		t.Fatalf("merge request of the merge commit = %d, %v, %v; want !1", n, ok, err)
	}
}
