package github

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/changeops/changeops/internal/forge"
)

// Contract tests: the adapter against GitHub's documented REST responses
// (the examples on docs.github.com, trimmed, in testdata/), served by a
// local server that also records what the adapter sent. They check the
// adapter reads and writes GitHub's documented shapes; they are not a
// substitute for a real GitHub (the end-to-end tests run a real Gitea).
type recorded struct {
	method, path, body string
}

func documented(t *testing.T) (*Repo, *[]recorded) {
	t.Helper()
	var mu sync.Mutex
	var got []recorded
	serve := func(file string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			got = append(got, recorded{r.Method, r.URL.Path, string(body)})
			mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer t0ken" {
				http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
				return
			}
			b, err := os.ReadFile("testdata/" + file)
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Type", "application/json")
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusCreated)
			}
			w.Write(b)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v3/repos/octocat/Hello-World/pulls/1347", serve("pull.json"))
	mux.Handle("GET /api/v3/repos/octocat/Hello-World/pulls/1347/reviews", serve("reviews.json"))
	mux.Handle("GET /api/v3/user", serve("user.json"))
	mux.Handle("GET /api/v3/repos/octocat/Hello-World/issues/1347/comments", serve("comments.json"))
	mux.Handle("PATCH /api/v3/repos/octocat/Hello-World/issues/comments/{id}", serve("comment.json"))
	mux.Handle("POST /api/v3/repos/octocat/Hello-World/issues/1347/comments", serve("comment.json"))
	mux.Handle("POST /api/v3/repos/octocat/Hello-World/statuses/{sha}", serve("status.json"))
	mux.Handle("GET /api/v3/repos/octocat/Hello-World/commits/{sha}/pulls", serve("commit_pulls.json"))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r, err := New(srv.URL+"/api/v3", "t0ken", "octocat/Hello-World", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return r, &got
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
	last := (*got)[len(*got)-1]
	if last.method != http.MethodPatch || last.path != "/api/v3/repos/octocat/Hello-World/issues/comments/2" {
		t.Fatalf("last request %s %s, want PATCH of comment 2", last.method, last.path)
	}
	var body struct{ Body string }
	if err := json.Unmarshal([]byte(last.body), &body); err != nil || body.Body != "new body" {
		t.Fatalf("edit body = %q, %v", last.body, err)
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
	last := (*got)[len(*got)-1]
	var st struct{ State, Description, Context string }
	if err := json.Unmarshal([]byte(last.body), &st); err != nil {
		t.Fatal(err)
	}
	if last.path != "/api/v3/repos/octocat/Hello-World/statuses/6dcb09b5b57875f334f61aebed695e2e4193db5e" ||
		st.State != "failure" || st.Context != "changeops/web" || len(st.Description) > 140 {
		t.Fatalf("status sent to %s: %+v (%d bytes of description)", last.path, st, len(st.Description))
	}
}

func TestGitHubContractPullOfCommit(t *testing.T) {
	r, _ := documented(t)
	n, ok, err := r.PullOfCommit(t.Context(), "e5bd3914e2e596debea16f433f57875b5b90bcd6")
	if err != nil || !ok || n != 1347 {
		t.Fatalf("pull of the merge commit = %d, %v, %v; want #1347", n, ok, err)
	}
}
