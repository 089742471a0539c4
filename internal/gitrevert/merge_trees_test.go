package gitrevert

import (
	"fmt"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// TestMergeAgainstGit compares Merge with `git merge-tree --write-tree` on
// random histories that fork and change on both sides: where git merges
// cleanly the trees must be identical; where git conflicts, so must Merge.
func TestMergeAgainstGit(t *testing.T) {
	compared, conflicts := 0, 0
	for seed := int64(1); seed <= histories; seed++ {
		rng := rand.New(rand.NewSource(seed))
		r := gittest.New(t, "main")
		g := &generator{rng: rng, r: r, files: map[string][]string{}}
		commit := func(msg string) string {
			r.Git(r.Clone, "add", "-A")
			r.Git(r.Clone, "commit", "-q", "--allow-empty", "-m", msg)
			return r.Git(r.Clone, "rev-parse", "HEAD")
		}
		g.initial()
		commit("initial")
		g.change()
		commit("main before the fork")
		fork := cloneFiles(g.files)
		r.Git(r.Clone, "checkout", "-q", "-b", "pr")
		for i := range 2 {
			g.change()
			commit(fmt.Sprintf("pull request %d", i))
		}
		head := r.Git(r.Clone, "rev-parse", "HEAD")
		r.Git(r.Clone, "checkout", "-q", "main")
		g.files = fork
		for i := range 2 {
			g.change()
			commit(fmt.Sprintf("main %d", i))
		}
		branch := r.Git(r.Clone, "rev-parse", "HEAD")

		repo, err := git.PlainOpen(r.Clone)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := Merge(t.Context(), repo, plumbing.NewHash(branch), plumbing.NewHash(head))
		if err != nil {
			t.Fatalf("seed %d: merge: %v", seed, err)
		}
		cmd := exec.Command("git", "merge-tree", "--write-tree", "--no-messages", branch, head)
		cmd.Dir = r.Clone
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.Clone)
		out, err := cmd.Output()
		gitTree := strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		gitOK := err == nil
		if _, exit := err.(*exec.ExitError); err != nil && (!exit || cmd.ProcessState.ExitCode() != 1) {
			t.Fatalf("seed %d: git merge-tree: %v", seed, err)
		}
		compared++
		switch {
		case gitOK && len(ours.Conflicts) > 0:
			t.Errorf("seed %d: git merges cleanly, we report conflicts in %v", seed, ours.Described())
		case !gitOK && len(ours.Conflicts) == 0:
			t.Errorf("seed %d: git conflicts, we do not", seed)
		case gitOK && ours.Tree.String() != gitTree:
			t.Errorf("seed %d: tree %s, git's %s", seed, ours.Tree, gitTree)
		case !gitOK:
			conflicts++
		}
	}
	t.Logf("%d merges compared with git: %d conflicts in both", compared, conflicts)
	if conflicts == compared {
		t.Fatal("every merge conflicted: the generator is broken")
	}
}

func cloneFiles(in map[string][]string) map[string][]string {
	out := make(map[string][]string, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		out[k] = slices.Clone(in[k])
	}
	return out
}
