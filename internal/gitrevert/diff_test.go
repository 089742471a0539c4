package gitrevert

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// histories is how many random histories the differential test builds;
// each commit of each is reverted onto the head by us and by git.
const histories = 40

// TestDifferentialAgainstGit compares Inverse with `git revert --no-commit`
// on random small histories (edits to different and the same lines,
// repeated lines, additions, deletions, exact renames, mode changes,
// binary files): where git succeeds the trees must be identical; where git
// conflicts, Inverse must report a conflict. Lines merge with git's own
// merge-file, so repeated lines align as git aligns them: no allowance.
// A failure prints its seed; rerun one with GITREVERT_SEED=n.
func TestDifferentialAgainstGit(t *testing.T) {
	seeds := make([]int64, histories)
	for i := range seeds {
		seeds[i] = int64(i + 1)
	}
	if s := os.Getenv("GITREVERT_SEED"); s != "" {
		var seed int64
		fmt.Sscan(s, &seed)
		seeds = []int64{seed}
	}
	compared, conflicts := 0, 0
	for _, seed := range seeds {
		n, c := checkHistory(t, seed)
		compared, conflicts = compared+n, conflicts+c
	}
	t.Logf("%d histories, %d reverts compared with git: %d conflicts in both", len(seeds), compared, conflicts)
	if compared < len(seeds)*3 {
		t.Fatalf("only %d reverts compared: the generator is broken", compared)
	}
}

func checkHistory(t *testing.T, seed int64) (compared, conflicts int) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	r := gittest.New(t, "main")
	g := &generator{rng: rng, r: r, files: map[string][]string{}}
	g.initial()
	commit := func(msg string) string {
		r.Git(r.Clone, "add", "-A")
		r.Git(r.Clone, "commit", "-q", "--allow-empty", "-m", msg)
		return r.Git(r.Clone, "rev-parse", "HEAD")
	}
	commits := []string{commit("initial")}
	for i := 0; i < 6; i++ {
		g.change()
		commits = append(commits, commit(fmt.Sprintf("change %d", i)))
	}
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	head := commits[len(commits)-1]
	for _, c := range commits[1:] {
		ours, err := Inverse(t.Context(), repo, plumbing.NewHash(c), plumbing.NewHash(head))
		if err != nil {
			t.Fatalf("seed %d: revert %s: %v", seed, c[:7], err)
		}
		gitTree, gitOK := gitRevert(t, r, c)
		compared++
		switch {
		case gitOK && len(ours.Conflicts) > 0:
			t.Errorf("seed %d: revert of %s: git succeeds, we report conflicts in %v", seed, c[:7], ours.Described())
		case !gitOK && len(ours.Conflicts) == 0:
			t.Errorf("seed %d: revert of %s: git conflicts, we do not", seed, c[:7])
		case gitOK && ours.Tree.String() != gitTree:
			t.Errorf("seed %d: revert of %s: tree %s, git's %s", seed, c[:7], ours.Tree, gitTree)
		case !gitOK:
			conflicts++
		}
	}
	return compared, conflicts
}

// gitRevert reverts c onto the clone's HEAD with git, returning the tree
// when it succeeds, and leaves the clone as it was. Anything but a clean
// revert or git's reported conflict fails the test.
func gitRevert(t *testing.T, r *gittest.Remote, c string) (string, bool) {
	t.Helper()
	tree, outcome := gitRevertOutcome(t, r, c)
	if outcome == gitCrashed {
		t.Fatalf("git revert %.7s crashed", c)
	}
	return tree, outcome == gitClean
}

const (
	gitClean = iota
	gitConflict
	gitCrashed // git 2.39's merge-ort hit a BUG() once while this test was written (a file turned folder: "Conflicted ... but nothing in basic working tree or index")
)

func gitRevertOutcome(t *testing.T, r *gittest.Remote, c string) (string, int) {
	t.Helper()
	cmd := exec.Command("git", "revert", "--no-edit", "--no-commit", c)
	cmd.Dir = r.Clone
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.Clone)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	outcome := gitClean
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() == 1 && strings.Contains(string(out), "CONFLICT"):
		outcome = gitConflict
	case strings.Contains(string(out), "BUG: merge-ort.c"):
		outcome = gitCrashed
		_ = os.Remove(filepath.Join(r.Clone, ".git", "index.lock"))
	default:
		t.Fatalf("git revert %.7s: %v\n%s", c, err, out)
	}
	tree := ""
	if outcome == gitClean {
		tree = r.Git(r.Clone, "write-tree")
	}
	r.Git(r.Clone, "reset", "-q", "--hard", "HEAD")
	quit := exec.Command("git", "revert", "--quit")
	quit.Dir = r.Clone
	_ = quit.Run()
	return tree, outcome
}

// generator makes random changes to the clone's files.
type generator struct {
	rng   *rand.Rand
	r     *gittest.Remote
	files map[string][]string // text files' lines
	next  int
}

func (g *generator) line() string {
	g.next++
	if g.rng.Intn(8) == 0 {
		return "common\n" // some repeated lines make alignment interesting
	}
	return fmt.Sprintf("line %d\n", g.next)
}

func (g *generator) write(name string) {
	p := filepath.Join(g.r.Clone, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		panic(err)
	}
	if err := os.WriteFile(p, []byte(strings.Join(g.files[name], "")), 0o644); err != nil {
		panic(err)
	}
}

func (g *generator) initial() {
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("dir%d/file%d.txt", i%2, i)
		for j := 0; j < 6+g.rng.Intn(8); j++ {
			g.files[name] = append(g.files[name], g.line())
		}
		g.write(name)
	}
}

func (g *generator) rename() {
	names := g.names()
	if len(names) == 0 {
		return
	}
	name := names[g.rng.Intn(len(names))]
	g.next++
	// Within its folder: moving folders wholesale (git's directory-rename
	// detection) is exercised by the real histories and the shapes test.
	n := filepath.Join(filepath.Dir(name), fmt.Sprintf("renamed%d.txt", g.next))
	g.r.Git(g.r.Clone, "mv", name, n)
	delete(g.files, name) // frozen from now on
}

func (g *generator) names() []string {
	var out []string
	for n := range g.files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// change applies one to three random operations; a rename is alone in its
// commit and the renamed file is not edited again, so every rename is exact
// (see the package comment).
func (g *generator) change() {
	if g.rng.Intn(8) == 0 {
		g.rename()
		return
	}
	for k := 0; k < 1+g.rng.Intn(3); k++ {
		names := g.names()
		if len(names) == 0 {
			g.files["new.txt"] = []string{g.line()}
			g.write("new.txt")
			continue
		}
		name := names[g.rng.Intn(len(names))]
		lines := g.files[name]
		switch op := g.rng.Intn(10); {
		case op < 5 && len(lines) > 0: // edit, insert or delete a line
			i := g.rng.Intn(len(lines))
			switch g.rng.Intn(3) {
			case 0:
				lines[i] = g.line()
			case 1:
				lines = slices.Insert(lines, i, g.line())
			case 2:
				lines = slices.Delete(lines, i, i+1)
			}
			g.files[name] = lines
			g.write(name)
		case op == 5: // add a file
			n := fmt.Sprintf("dir%d/added%d.txt", g.rng.Intn(3), g.next)
			g.files[n] = []string{g.line(), g.line()}
			g.write(n)
		case op == 6: // delete a file
			delete(g.files, name)
			g.r.Git(g.r.Clone, "rm", "-q", "-f", name)
		case op == 7 || op == 8: // mode change
			p := filepath.Join(g.r.Clone, name)
			st, err := os.Stat(p)
			if err != nil {
				panic(err)
			}
			if err := os.Chmod(p, st.Mode()^0o111); err != nil {
				panic(err)
			}
		default: // a binary file, rewritten
			data := []byte{0, byte(g.rng.Intn(256)), 1, 2}
			if err := os.WriteFile(filepath.Join(g.r.Clone, "blob.bin"), data, 0o644); err != nil {
				panic(err)
			}
		}
	}
}
