package gitrevert

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// A revert commit made with go-git is one git itself reads back: the
// working tree checks out to the parent's content, the message carries
// git's wording and changeops' trailer.
func TestCommitRevert(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("add page", map[string]string{"site/index.html": "v1\nbody\nfooter\n"})
	bad := r.Commit("break the page", map[string]string{"site/index.html": "v2\nbody\nfooter\n"})
	head := r.Commit("edit the footer", map[string]string{"site/index.html": "v2\nbody\nnew footer\n"})

	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Inverse(t.Context(), repo, plumbing.NewHash(bad), plumbing.NewHash(head))
	if err != nil || len(res.Conflicts) > 0 || !res.Changed {
		t.Fatalf("inverse = %+v, %v; want a clean change (the later edit is on another line)", res, err)
	}
	msg := Message("break the page", bad, "change/main/"+bad)
	when := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	h, err := Commit(repo, res.Tree, plumbing.NewHash(head), msg, object.Signature{Name: "changeops", Email: "changeops@localhost"}, when)
	if err != nil {
		t.Fatal(err)
	}
	r.Git(r.Clone, "checkout", "-q", h.String())
	got, err := os.ReadFile(filepath.Join(r.Clone, "site/index.html"))
	if err != nil || string(got) != "v1\nbody\nnew footer\n" {
		t.Fatalf("after the revert the page is %q, %v; want v1 with the new footer", got, err)
	}
	if parent := r.Git(r.Clone, "rev-parse", "HEAD^"); parent != head {
		t.Errorf("parent = %s, want the head %s", parent, head)
	}
	body := r.Git(r.Clone, "log", "-1", "--format=%B")
	if !IsRevertOf(body, bad) || r.Git(r.Clone, "log", "-1", "--format=%(trailers:key=Changeops-Run,valueonly)") != "change/main/"+bad {
		t.Errorf("message %q lacks the revert line or the trailer", body)
	}
	if r.Git(r.Clone, "log", "-1", "--format=%s") != `Revert "break the page"` {
		t.Errorf("subject = %q", r.Git(r.Clone, "log", "-1", "--format=%s"))
	}
	if IsRevertOf(body, head) {
		t.Error("IsRevertOf matches another commit")
	}
}

// Reverting a change the head already undid changes nothing; reverting over
// a later edit of the same line conflicts, naming the path.
func TestInverseNoOpAndConflict(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("add", map[string]string{"a.txt": "one\n", "b.txt": "x\n"})
	c := r.Commit("change a", map[string]string{"a.txt": "two\n"})
	undone := r.Commit("change a back", map[string]string{"a.txt": "one\n"})
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Inverse(t.Context(), repo, plumbing.NewHash(c), plumbing.NewHash(undone))
	if err != nil || len(res.Conflicts) > 0 || res.Changed {
		t.Errorf("revert of an undone change = %+v, %v; want no change", res, err)
	}
	again := r.Commit("change a again", map[string]string{"a.txt": "three\n"})
	res, err = Inverse(t.Context(), repo, plumbing.NewHash(c), plumbing.NewHash(again))
	if err != nil || len(res.Conflicts) != 1 || res.Conflicts[0] != "a.txt" {
		t.Errorf("revert over a later edit of the line = %+v, %v; want a conflict on a.txt", res, err)
	}
}
