package gitrevert

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/testkit/gittest"
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
	tree, err := Subtract(t.Context(), repo, commit, undone)
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

// Every form of revert message git and the forges write names the
// reverted commit, for the effective tree and the idempotency check.
func TestRevertMessages(t *testing.T) {
	t.Parallel()
	x := "0123456789abcdef0123456789abcdef01234567"
	y := "89abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		name, message string
		want          []Reverted
	}{
		{"git revert", "Revert \"x\"\n\nThis reverts commit " + x + ".\n", []Reverted{{Commit: x, Full: true}}},
		{"git revert -m 1 of a merge, and GitHub's Revert button", "Revert \"Merge pull request #7 from a/b\"\n\nThis reverts commit " + x + ", reversing\nchanges made to " + y + ".\n",
			[]Reverted{{Commit: x, Full: true, Mainline: y}}},
		{"the same on one line", "This reverts commit " + x + ", reversing changes made to " + y + ".", []Reverted{{Commit: x, Full: true, Mainline: y}}},
		{"GitLab, no full stop", "Revert \"x\"\n\nThis reverts commit " + x + "\r\n", []Reverted{{Commit: x, Full: true}}},
		{"git revert --reference", "Revert \"x\"\n\nThis reverts commit 0123456 (x, 2026-01-02).\n", []Reverted{{Commit: "0123456"}}},
		{"a squash of two reverts", "Reverts (#9)\n\n* Revert \"a\"\n\nThis reverts commit " + x + ".\n\n* Revert \"b\"\n\nThis reverts commit " + y + ".\n",
			[]Reverted{{Commit: x, Full: true}, {Commit: y, Full: true}}},
		{"changeops", Message("x", x, "change/main/"+x), []Reverted{{Commit: x, Full: true}}},
		{"a short SHA without --reference's form", "This reverts commit 0123456.\n", nil},
		{"a mention, not a revert line", "Fix what the revert did: This reverts commit " + x + ".\n", nil},
		{"GitLab's merge request revert names no commit", "This reverts merge request !12", nil},
	}
	for _, c := range cases {
		got := Reverts(c.message)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Reverts = %+v, want %+v", c.name, got, c.want)
		}
		for _, w := range c.want {
			full := w.Commit
			if !w.Full {
				full = x
			}
			if !IsRevertOf(c.message, full) {
				t.Errorf("%s: IsRevertOf(%.7s) = false", c.name, full)
			}
		}
		if IsRevertOf(c.message, "fedcba9876543210fedcba9876543210fedcba98") {
			t.Errorf("%s: IsRevertOf matches another commit", c.name)
		}
	}
}

// A merged pull request reverted by git (`git revert -m 1`, the message
// GitHub's Revert button also writes) is recognised: a commit merged after
// it deploys without the pull request's change, and a retried rollback
// finds the revert instead of pushing another.
func TestEffectiveTreeRecognisesARevertedMerge(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("base", map[string]string{"page.txt": "title\nbody\nfooter\n"})
	r.Git(r.Clone, "checkout", "-q", "-b", "feature")
	r.Commit("feature: bad title", map[string]string{"page.txt": "BAD\nbody\nfooter\n"})
	r.Git(r.Clone, "checkout", "-q", "main")
	r.Git(r.Clone, "merge", "-q", "--no-ff", "-m", "Merge pull request #1 from a/feature", "feature")
	m := r.Git(r.Clone, "rev-parse", "HEAD")
	b := r.Commit("B: new footer", map[string]string{"page.txt": "BAD\nbody\nnew footer\n"})
	r.Git(r.Clone, "revert", "--no-edit", "-m", "1", m)
	msg := r.Git(r.Clone, "log", "-1", "--format=%B")
	if !strings.Contains(msg, ", reversing\nchanges made to ") {
		t.Fatalf("git wrote %q; the test expects its merge-revert form", msg)
	}
	undone, page, err := effective(t, r, b)
	if err != nil || !slices.Equal(undone, []string{m}) || page != "title\nbody\nnew footer\n" {
		t.Fatalf("effective(B) = %v %q, %v; want the merge undone and B's footer kept", undone, page, err)
	}
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	found, err := findRevert(repo, r.Git(r.Clone, "rev-parse", "HEAD"), m)
	if err != nil || found != r.Git(r.Clone, "rev-parse", "HEAD") {
		t.Errorf("findRevert = %q, %v; want git's revert of the merge", found, err)
	}
}
