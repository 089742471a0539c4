package gitrevert

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

func pushFixture(t *testing.T) (*gittest.Remote, *gitrepo.Repo, string) {
	t.Helper()
	r := gittest.New(t, "main")
	r.Commit("add", map[string]string{"site/index.html": "v1\n", "README.md": "r\n"})
	bad := r.Commit("break the site", map[string]string{"site/index.html": "v2\n"})
	url := r.ServeHTTP("deploy", "t0ken")
	cache := gitrepo.New(gitrepo.Options{URL: url, Dir: filepath.Join(t.TempDir(), "cache.git"), Username: "deploy", Password: "t0ken"})
	return r, cache, bad
}

func request(bad string) Request {
	return Request{Branch: "main", Commit: bad, Subject: "break the site", RunID: "change/main/" + bad,
		Author: object.Signature{Name: "changeops", Email: "changeops@localhost"}}
}

// The revert lands on the remote (through smart HTTP with auth), and a
// second call, as an activity retried after its push, reuses it.
func TestRevertAndPushIsIdempotent(t *testing.T) {
	t.Parallel()
	r, cache, bad := pushFixture(t)
	ctx := context.Background()
	first, err := RevertAndPush(ctx, cache, request(bad))
	if err != nil || first.Revert == "" || first.Reused {
		t.Fatalf("first push = %+v, %v", first, err)
	}
	if head := r.Git(r.Bare, "rev-parse", "main"); head != first.Revert {
		t.Fatalf("remote main = %s, want the revert %s", head, first.Revert)
	}
	if got := r.Git(r.Bare, "show", "main:site/index.html"); got != "v1" {
		t.Errorf("after the revert the remote has %q, want v1", got)
	}
	again, err := RevertAndPush(ctx, cache, request(bad))
	if err != nil || !again.Reused || again.Revert != first.Revert {
		t.Fatalf("second call = %+v, %v; want the first revert reused", again, err)
	}
	if n := r.Git(r.Bare, "rev-list", "--count", "main"); n != "3" {
		t.Errorf("main has %s commits, want 3 (one revert)", n)
	}
}

// A commit pushed between building the revert and pushing it: the push is
// rejected, the revert is rebuilt on the new head, and one revert lands.
func TestRevertAndPushRebuildsAfterARace(t *testing.T) {
	t.Parallel()
	r, cache, bad := pushFixture(t)
	req := request(bad)
	req.BeforePush = func(attempt int) {
		if attempt == 1 {
			r.Commit("racing edit", map[string]string{"README.md": "raced\n"})
		}
	}
	got, err := RevertAndPush(context.Background(), cache, req)
	if err != nil || got.Attempts != 2 {
		t.Fatalf("push = %+v, %v; want success on the second attempt", got, err)
	}
	if parent := r.Git(r.Bare, "rev-parse", "main^"); r.Git(r.Bare, "log", "-1", "--format=%s", parent) != "racing edit" {
		t.Errorf("the revert is not on top of the racing commit")
	}
	if n := strings.Count(r.Git(r.Bare, "log", "--format=%s", "main"), `Revert "break the site"`); n != 1 {
		t.Errorf("%d reverts on main, want 1", n)
	}
}

// A conflict is a result: nothing is pushed.
func TestRevertAndPushConflict(t *testing.T) {
	t.Parallel()
	r, cache, bad := pushFixture(t)
	before := r.Commit("edit the same line", map[string]string{"site/index.html": "v3\n"})
	got, err := RevertAndPush(context.Background(), cache, request(bad))
	if err != nil || len(got.Conflicts) != 1 || got.Conflicts[0] != "site/index.html" || got.Revert != "" {
		t.Fatalf("push = %+v, %v; want a conflict on site/index.html", got, err)
	}
	if head := r.Git(r.Bare, "rev-parse", "main"); head != before {
		t.Errorf("remote main moved to %s on a conflict", head)
	}
}
