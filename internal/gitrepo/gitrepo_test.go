package gitrepo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// fixture is a real repository built with the git CLI, and a Repo caching it.
type fixture struct {
	*gittest.Remote
	repo *Repo
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := gittest.New(t, "main")
	return &fixture{Remote: r, repo: New(Options{URL: r.Bare, Dir: filepath.Join(t.TempDir(), "cache.git")})}
}

func (f *fixture) write(name, content string) { f.Write(map[string]string{name: content}) }

func (f *fixture) commit(msg string) string { return f.Commit(msg, nil) }

// fetch fetches into the cache and hands the repository back at the
// test's end.
func (f *fixture) fetch(t *testing.T) *git.Repository {
	t.Helper()
	g, release, err := f.repo.Fetch(context.Background())
	t.Cleanup(release)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (f *fixture) git(dir string, args ...string) string { return f.Git(dir, args...) }

func TestChangedPaths(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("stacks/web/Pulumi.yaml", "name: web\n")
	f.write("stacks/api/Pulumi.yaml", "name: api\n")
	f.write("docs/old.md", "old\n")
	root := f.commit("root")
	f.write("stacks/web/Pulumi.yaml", "name: web\nruntime: yaml\n")
	f.git(f.Clone, "mv", "docs/old.md", "docs/new.md")
	if err := os.Remove(filepath.Join(f.Clone, "stacks/api/Pulumi.yaml")); err != nil {
		t.Fatal(err)
	}
	second := f.commit("edit, rename, delete")

	g := f.fetch(t)
	for _, c := range []struct {
		sha  string
		want []string
	}{
		{root, []string{"docs/old.md", "stacks/api/Pulumi.yaml", "stacks/web/Pulumi.yaml"}},
		{second, []string{"docs/new.md", "docs/old.md", "stacks/api/Pulumi.yaml", "stacks/web/Pulumi.yaml"}},
	} {
		info, err := Lookup(g, c.sha)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ChangedPaths(info.Commit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("changed paths of %s = %v, want %v", c.sha[:7], got, c.want)
		}
	}
	info, _ := Lookup(g, second)
	if info.Parent != root || info.Subject != "edit, rename, delete" || info.AuthorEmail != "alice@example.com" {
		t.Errorf("lookup = %+v", info)
	}
}

func TestFirstParentsSinceAndRewrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("a", "1")
	base := f.commit("base")
	f.git(f.Clone, "checkout", "-q", "-b", "feature")
	f.write("b", "1")
	f.git(f.Clone, "add", "-A")
	f.git(f.Clone, "commit", "-q", "-m", "on a branch")
	f.git(f.Clone, "checkout", "-q", "main")
	f.write("a", "2")
	f.git(f.Clone, "add", "-A")
	f.git(f.Clone, "commit", "-q", "-m", "second")
	second := f.git(f.Clone, "rev-parse", "HEAD")
	f.git(f.Clone, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
	merge := f.git(f.Clone, "rev-parse", "HEAD")
	f.git(f.Clone, "push", "-q", "-f", "origin", "HEAD:main")

	g := f.fetch(t)
	head, err := Head(g, "main")
	if err != nil || head != merge {
		t.Fatalf("head = %s, %v; want %s", head, err, merge)
	}
	got, found, err := FirstParentsSince(g, head, base, 0)
	if err != nil || !found || !slices.Equal(got, []string{second, merge}) {
		t.Fatalf("since base = %v, %v, %v; want [second merge] (the feature commit is not first-parent)", got, found, err)
	}
	got, _, _ = FirstParentsSince(g, head, base, 1)
	if !slices.Equal(got, []string{second}) {
		t.Errorf("limit 1 = %v, want the oldest new commit first", got)
	}

	// A force push that drops `second` and `merge`: the last seen commit
	// is no longer on the branch.
	f.git(f.Clone, "reset", "-q", "--hard", base)
	f.write("c", "1")
	rewritten := f.commit("rewritten")
	g = f.fetch(t)
	_, found, err = FirstParentsSince(g, rewritten, merge, 0)
	if err != nil || found {
		t.Errorf("after a force push: found = %v, %v; want not found", found, err)
	}
}

func TestResolveAndEnsureCommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("a", "1")
	sha := f.commit("one")
	g, release, err := f.repo.EnsureCommit(context.Background(), sha)
	defer release()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(g, sha[:8]); err != nil || got != sha {
		t.Errorf("resolve %s = %s, %v", sha[:8], got, err)
	}
	// A commit pushed after the cache was filled is fetched on demand.
	f.write("a", "2")
	later := f.commit("two")
	_, release, err = f.repo.EnsureCommit(context.Background(), later)
	release()
	if err != nil {
		t.Errorf("ensure a newer commit: %v", err)
	}
	_, release, err = f.repo.EnsureCommit(context.Background(), strings.Repeat("ab", 20))
	release()
	if !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("ensure a missing commit: err = %v, want ErrCommitNotFound", err)
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("stacks/web/Pulumi.yaml", "name: web\n")
	f.write("stacks/web/check.sh", "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(f.Clone, "stacks/web/check.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("Pulumi.yaml", filepath.Join(f.Clone, "stacks/web/link.yaml")); err != nil {
		t.Fatal(err)
	}
	sha := f.commit("files")
	g := f.fetch(t)
	dest := filepath.Join(t.TempDir(), "ws", sha)
	// A folder left by a crashed export (no marker) is replaced, not trusted.
	if err := os.MkdirAll(filepath.Join(dest, "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Export(g, sha, dest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "stale")); !os.IsNotExist(err) {
		t.Errorf("stale folder from a crashed export survived: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "stacks/web/Pulumi.yaml")); err != nil || string(b) != "name: web\n" {
		t.Errorf("Pulumi.yaml = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dest, "stacks/web/check.sh")); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("check.sh lost its executable bit: %v %v", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dest, "stacks/web/link.yaml")); err != nil || target != "Pulumi.yaml" {
		t.Errorf("symlink = %q, %v", target, err)
	}
	// A second export of the same commit reuses the whole one.
	marker := filepath.Join(dest, completeMarker)
	before, _ := os.Stat(marker)
	if err := Export(g, sha, dest); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(marker)
	if !before.ModTime().Equal(after.ModTime()) {
		t.Error("a complete export was written again")
	}
	if ok, err := HasFile(g, sha, "stacks/web/Pulumi.yaml"); !ok || err != nil {
		t.Errorf("HasFile = %v, %v", ok, err)
	}
	if ok, err := HasFile(g, sha, "stacks/api/Pulumi.yaml"); ok || err != nil {
		t.Errorf("HasFile of a missing path = %v, %v", ok, err)
	}
}
