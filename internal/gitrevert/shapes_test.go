package gitrevert

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// Each shape in which two entries could come to share a name, or a file
// lands in a folder the other side moved, reverted by Inverse and by
// `git revert --no-commit`: both conflict on the same paths, or both
// succeed with the same tree. Every step is a shell script run in the
// clone and committed; the commit at index revert is reverted onto the
// last.
func TestConflictShapes(t *testing.T) {
	t.Parallel()
	// A submodule that is not checked out: its folder is empty, and
	// `git add -A` leaves it as it is.
	gitlink := "mkdir -p sub; git update-index --add --cacheinfo 160000,0123456789abcdef0123456789abcdef01234567,"
	cases := []struct {
		name   string
		steps  []string
		revert int
		want   []string // conflicting paths; nil: a clean revert
		reason string   // the reason the first conflict gives
	}{
		{
			name: "file to folder, the branch adds a file in the folder",
			steps: []string{"echo a > a; echo x > x", "rm a; mkdir a; echo b > a/b",
				"echo c > a/c"},
			revert: 1, want: []string{"a"}, reason: "file/directory: the result also has a/c",
		},
		{
			name:   "file to folder, nothing since",
			steps:  []string{"echo a > a; echo x > x", "rm a; mkdir a; echo b > a/b", "echo y > x"},
			revert: 1,
		},
		{
			name:   "file deleted, the branch adds a folder of its name",
			steps:  []string{"echo a > a; echo x > x", "rm a", "mkdir a; echo c > a/c"},
			revert: 1, want: []string{"a"}, reason: "file/directory: the result also has a/c",
		},
		{
			name:   "folder deleted, the branch adds a file of its name",
			steps:  []string{"mkdir a; echo b > a/b; echo x > x", "rm -r a", "echo file > a"},
			revert: 1, want: []string{"a"}, reason: "file/directory: the result also has a/b",
		},
		{
			name:   "folder to file, nothing since",
			steps:  []string{"mkdir a; echo b > a/b; echo x > x", "rm -r a; echo file > a", "echo y > x"},
			revert: 1,
		},
		{
			name: "folder renamed, the branch adds a file in the new folder",
			steps: []string{"mkdir x; for i in 1 2 3; do seq $i 40 > x/f$i; done; echo o > other",
				"git mv x y", "seq 100 140 > y/new"},
			revert: 1, want: []string{"y/new"}, reason: "file location: in y/, which the revert moved to x/",
		},
		{
			name: "a file deleted, the branch moves its folder",
			steps: []string{"mkdir x; for i in 1 2 3; do seq $i 40 > x/f$i; done; echo o > other",
				"git rm -q x/f3", "git mv x z"},
			revert: 1, want: []string{"x/f3"}, reason: "file location: in x/, which the branch moved to z/",
		},
		{
			name:   "file to symlink, nothing since",
			steps:  []string{"echo target > l; echo x > x", "rm l; ln -s x l", "echo y > x"},
			revert: 1,
		},
		{
			name:   "file to symlink, the branch retargets the link",
			steps:  []string{"echo target > l; echo x > x", "rm l; ln -s x l", "rm l; ln -s y l"},
			revert: 1, want: []string{"l"}, reason: "symlink",
		},
		{
			name:   "symlink to folder, the branch adds a file in the folder",
			steps:  []string{"ln -s x l; echo x > x", "rm l; mkdir l; echo a > l/a", "echo b > l/b"},
			revert: 1, want: []string{"l"}, reason: "file/directory: the result also has l/b",
		},
		{
			name:   "file to submodule, nothing since",
			steps:  []string{"echo s > sub; echo x > x", "git rm -q sub; " + gitlink + "sub", "echo y > x"},
			revert: 1,
		},
		{
			name: "folder to submodule, the branch makes it a file",
			steps: []string{"mkdir sub; echo f > sub/f; echo x > x", "git rm -q -r sub; " + gitlink + "sub",
				"git rm -q --cached sub; rmdir sub; echo g > sub"},
			revert: 1, want: []string{"sub"}, reason: "modify/delete",
		},
		{
			name: "submodule to folder, the branch adds a file in the folder",
			steps: []string{gitlink + "sub; echo x > x", "git rm -q --cached sub; echo f > sub/f",
				"echo g > sub/g"},
			revert: 1, want: []string{"sub"}, reason: "file/directory: the result also has sub/g",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := gittest.New(t, "main")
			var commits []string
			for i, step := range c.steps {
				sh := exec.Command("sh", "-ec", step)
				sh.Dir = r.Clone
				sh.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.Clone)
				if out, err := sh.CombinedOutput(); err != nil {
					t.Fatalf("step %d: %v\n%s", i, err, out)
				}
				r.Git(r.Clone, "add", "-A")
				r.Git(r.Clone, "commit", "-q", "--allow-empty", "-m", "step")
				commits = append(commits, r.Git(r.Clone, "rev-parse", "HEAD"))
			}
			repo, err := git.PlainOpen(r.Clone)
			if err != nil {
				t.Fatal(err)
			}
			c0, head := commits[c.revert], commits[len(commits)-1]
			res, err := Inverse(t.Context(), repo, plumbing.NewHash(c0), plumbing.NewHash(head))
			if err != nil {
				t.Fatal(err)
			}
			gitTree, gitOK := gitRevert(t, r, c0)
			if gitOK != (c.want == nil) {
				t.Fatalf("git revert succeeded = %v; the case expects %v (the case is wrong about git)", gitOK, c.want == nil)
			}
			if !slices.Equal(res.Conflicts, c.want) {
				t.Fatalf("conflicts = %v (%v), want %v", res.Conflicts, res.Reasons, c.want)
			}
			if c.want != nil {
				if why := res.Reasons[c.want[0]]; why != c.reason {
					t.Errorf("reason for %s = %q, want %q", c.want[0], why, c.reason)
				}
				if d := res.Described(); !strings.Contains(d[0], c.reason) {
					t.Errorf("described = %v, want the reason", d)
				}
				return
			}
			if res.Tree.String() != gitTree {
				t.Errorf("tree %s, git's %s", res.Tree, gitTree)
			}
		})
	}
}

// The last guard: a tree with a name that is both a file and a folder is
// never written, whatever the caller.
func TestWriteTreeRefusesDuplicateNames(t *testing.T) {
	t.Parallel()
	repo, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := writeBlob(repo.Storer, []byte("x\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := entry{hash: blob, mode: filemode.Regular}
	for _, entries := range []map[string]entry{
		{"a": f, "a/b": f},
		{"d/a": f, "d/a/b/c": f},
		{"a/": f},
		{"a//b": f},
	} {
		if h, err := writeTree(repo.Storer, entries); err == nil {
			t.Errorf("writeTree(%v) = %s, want an error", entries, h)
		}
	}
	if _, err := writeTree(repo.Storer, map[string]entry{"a": f, "a-b/c": f, "b/c": f}); err != nil {
		t.Errorf("a valid tree: %v", err)
	}
}
