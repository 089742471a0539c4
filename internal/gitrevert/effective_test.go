package gitrevert

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/gittest"
)

// effective builds commit's effective tree at the remote's head and returns
// page.txt in it.
func effective(t *testing.T, r *gittest.Remote, commit string) ([]string, string, error) {
	t.Helper()
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	head := r.Git(r.Clone, "rev-parse", "HEAD")
	undone, err := Undone(repo, commit, head)
	if err != nil {
		t.Fatalf("undone: %v", err)
	}
	tree, err := Subtract(repo, commit, undone)
	if err != nil {
		return undone, "", err
	}
	tr, err := repo.TreeObject(tree)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tr.File("page.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return undone, s, nil
}

// revert runs git's own revert in the clone and pushes it.
func revert(r *gittest.Remote, sha string) string {
	r.Git(r.Clone, "revert", "--no-edit", sha)
	r.Git(r.Clone, "push", "-q", "origin", "HEAD:"+r.Branch)
	return r.Git(r.Clone, "rev-parse", "HEAD")
}

// The design's example: A then B on the branch, A reverted after B. B's
// effective tree keeps B's own edit and drops A's.
func TestEffectiveTreeDropsAChangeRevertedLater(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("base", map[string]string{"page.txt": "title\nbody\nfooter\n"})
	a := r.Commit("A: bad title", map[string]string{"page.txt": "BAD\nbody\nfooter\n"})
	b := r.Commit("B: new footer", map[string]string{"page.txt": "BAD\nbody\nnew footer\n"})
	revert(r, a)

	undone, page, err := effective(t, r, b)
	if err != nil || !slices.Equal(undone, []string{a}) || page != "title\nbody\nnew footer\n" {
		t.Fatalf("effective(B) = %v %q, %v; want A undone and B's footer kept", undone, page, err)
	}
	// A's own effective tree is its parent's: its change is gone.
	undone, page, err = effective(t, r, a)
	if err != nil || !slices.Equal(undone, []string{a}) || page != "title\nbody\nfooter\n" {
		t.Fatalf("effective(A) = %v %q, %v; want the base", undone, page, err)
	}
}

// B edits the very line A changed: subtracting A conflicts, and the error
// names the reverted change B depends on.
func TestEffectiveTreeConflictNamesTheRevertedChange(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("base", map[string]string{"page.txt": "title\nbody\n", "other.txt": "x\n"})
	a := r.Commit("A", map[string]string{"page.txt": "BAD\nbody\n"})
	b := r.Commit("B builds on A", map[string]string{"page.txt": "BAD and more\nbody\n"})
	// Reverting A at the head must still be possible for git: revert B's
	// line first by hand, then A, as a person would.
	r.Commit("fix B", map[string]string{"page.txt": "BAD\nbody\n"})
	revert(r, a)

	_, _, err := effective(t, r, b)
	var dep *DependsError
	if !errors.As(err, &dep) || dep.Reverted != a || dep.Commit != b || !slices.Equal(dep.Conflicts, []string{"page.txt"}) {
		t.Fatalf("err = %v; want a DependsError naming A and page.txt", err)
	}
}

// Reverts that need no subtraction: one already in the commit's history,
// and one that a later revert cancelled.
func TestEffectiveTreeIgnoresSettledReverts(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("base", map[string]string{"page.txt": "title\nbody\n"})
	a := r.Commit("A", map[string]string{"page.txt": "A title\nbody\n"})
	revert(r, a)
	b := r.Commit("B", map[string]string{"page.txt": "title\nB body\n"})
	c := r.Commit("C", map[string]string{"page.txt": "title\nB body\nC\n"})
	ra := revert(r, c)
	revert(r, ra) // C is back

	undone, page, err := effective(t, r, b)
	if err != nil || len(undone) != 0 || page != "title\nB body\n" {
		t.Fatalf("effective(B) = %v %q, %v; want B's own tree", undone, page, err)
	}
	undone, page, err = effective(t, r, c)
	if err != nil || len(undone) != 0 || page != "title\nB body\nC\n" {
		t.Fatalf("effective(C) = %v %q, %v; want C's own tree (its revert was reverted)", undone, page, err)
	}
}

func TestRevertedBy(t *testing.T) {
	t.Parallel()
	sha := plumbing.NewHash("0123456789abcdef0123456789abcdef01234567").String()
	if got, ok := RevertedBy(Message("x", sha, "change/main/y")); !ok || got != sha {
		t.Errorf("RevertedBy(our message) = %q, %v", got, ok)
	}
	if _, ok := RevertedBy("Revert \"x\"\n\nThis reverts commit 0123.\n"); ok {
		t.Error("a short SHA is not a revert line git writes")
	}
}
