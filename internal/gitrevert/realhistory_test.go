package gitrevert

import (
	"archive/zip"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// realModules are Go modules whose released versions, from the module
// cache, make real histories: each version a commit. Those the cache does
// not hold (two versions at least) are left out.
var realModules = []string{
	"golang.org/x/time",
	"go.opentelemetry.io/otel/trace",
	"golang.org/x/sync",
	"github.com/spf13/cobra",
	"github.com/sirupsen/logrus",
	"go.opentelemetry.io/otel/metric",
}

// headOffsets: every commit is reverted onto the head 0, 3 and 25 commits
// after it.
var headOffsets = []int{0, 3, 25}

// TestDifferentialRealHistories compares Inverse with `git revert
// --no-commit` on histories of real code: the released versions of a few
// Go modules, then edits replayed on top (line edits, added, deleted and
// renamed files, folders moved, files turned into folders, mode changes).
// Where git succeeds the trees must be identical; where git conflicts,
// Inverse must conflict. -short uses two modules.
func TestDifferentialRealHistories(t *testing.T) {
	t.Parallel()
	cache := filepath.Join(goEnv(t, "GOMODCACHE"), "cache", "download")
	var found int
	var total counts
	for _, mod := range realModules {
		versions := moduleZips(cache, mod)
		if len(versions) < 2 {
			continue
		}
		if testing.Short() && found == 2 {
			break
		}
		found++
		c := checkRealHistory(t, mod, versions)
		t.Logf("%s: %d versions + %d edits: %d reverts compared: %d clean and identical, %d conflicts in both (%d skipped: git crashed)",
			mod, len(versions), editsPerHistory, c.compared, c.clean, c.conflicts, c.gitCrashed)
		total.add(c)
	}
	if found == 0 {
		t.Skip("the module cache holds no two versions of any of", realModules)
	}
	t.Logf("%d real histories: %d reverts compared with git: %d clean and identical, %d conflicts in both (%d skipped: git crashed)",
		found, total.compared, total.clean, total.conflicts, total.gitCrashed)
	if total.clean == 0 || total.conflicts == 0 {
		t.Errorf("the histories exercise too little: %+v", total)
	}
}

// editsPerHistory is enough for a head 25 commits after every version.
const editsPerHistory = 28

type counts struct{ compared, clean, conflicts, gitCrashed int }

func (c *counts) add(o counts) {
	c.compared, c.clean, c.conflicts = c.compared+o.compared, c.clean+o.clean, c.conflicts+o.conflicts
	c.gitCrashed += o.gitCrashed
}

func checkRealHistory(t *testing.T, mod string, zips []string) counts {
	t.Helper()
	r := gittest.New(t, "main")
	commit := func(msg string) string {
		r.Git(r.Clone, "add", "-A")
		r.Git(r.Clone, "commit", "-q", "--allow-empty", "-m", msg)
		return r.Git(r.Clone, "rev-parse", "HEAD")
	}
	var commits []string
	for _, z := range zips {
		if err := unpackModule(z, r.Clone); err != nil {
			t.Fatalf("%s: %v", z, err)
		}
		commits = append(commits, commit(strings.TrimSuffix(filepath.Base(z), ".zip")))
	}
	e := &editor{rng: rand.New(rand.NewSource(int64(len(mod)))), r: r}
	for i := 0; i < editsPerHistory; i++ {
		e.edit()
		commits = append(commits, commit(fmt.Sprintf("edit %d", i)))
	}
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	var c counts
	for h := 1; h < len(commits); h++ {
		head := commits[h]
		r.Git(r.Clone, "checkout", "-q", "--detach", head)
		for _, off := range headOffsets {
			i := h - off
			if i < 1 {
				continue
			}
			ours, err := Inverse(t.Context(), repo, plumbing.NewHash(commits[i]), plumbing.NewHash(head))
			if err != nil {
				t.Fatalf("%s: revert %.7s onto %.7s: %v", mod, commits[i], head, err)
			}
			gitTree, outcome := gitRevertOutcome(t, r, commits[i])
			if outcome == gitCrashed {
				c.gitCrashed++ // nothing to compare with
				continue
			}
			gitOK := outcome == gitClean
			c.compared++
			switch {
			case gitOK && len(ours.Conflicts) > 0:
				t.Errorf("%s: revert of commit %d onto %d: git succeeds, we report conflicts in %v", mod, i, h, ours.Described())
			case !gitOK && len(ours.Conflicts) == 0:
				t.Errorf("%s: revert of commit %d onto %d: git conflicts, we do not", mod, i, h)
			case gitOK && ours.Tree.String() != gitTree:
				t.Errorf("%s: revert of commit %d onto %d: tree %s, git's %s", mod, i, h, ours.Tree, gitTree)
			case gitOK:
				c.clean++
			default:
				c.conflicts++
			}
		}
	}
	return c
}

func goEnv(t *testing.T, name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Skipf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// moduleZips lists a module's released versions in the cache, oldest first.
func moduleZips(cache, mod string) []string {
	dir := filepath.Join(cache, filepath.FromSlash(mod), "@v")
	names, _ := filepath.Glob(filepath.Join(dir, "v*.zip"))
	var out []string
	for _, n := range names {
		if v := strings.TrimSuffix(filepath.Base(n), ".zip"); !strings.Contains(v, "-") && versionKey(v) != nil {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		return slices.Compare(versionKey(filepath.Base(a)), versionKey(filepath.Base(b)))
	})
	return out
}

func versionKey(v string) []int {
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(v, "v"), ".zip"), ".")
	var key []int
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSuffix(p, "+incompatible"))
		if err != nil {
			return nil
		}
		key = append(key, n)
	}
	return key
}

// unpackModule replaces the clone's files with a module zip's.
func unpackModule(zipPath, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != ".git" {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	z, err := zip.OpenReader(zipPath)
	if err != nil {
		return err
	}
	defer z.Close()
	for _, f := range z.File {
		at := strings.Index(f.Name, "@")
		slash := strings.Index(f.Name[max(at, 0):], "/")
		if at < 0 || slash < 0 {
			continue
		}
		name := f.Name[at+slash+1:] // after module@version/
		if strings.HasSuffix(name, "/") || name == "" || strings.Contains("/"+name+"/", "/.git/") {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// editor replays edits on a real tree, as people make them.
type editor struct {
	rng *rand.Rand
	r   *gittest.Remote
	n   int
}

func (e *editor) files() []string {
	return strings.Split(e.r.Git(e.r.Clone, "ls-files"), "\n")
}

func (e *editor) pick() string {
	fs := e.files()
	return fs[e.rng.Intn(len(fs))]
}

func (e *editor) edit() {
	e.n++
	switch op := e.rng.Intn(20); {
	case op < 11: // edit lines of one or two files
		for k := 0; k < 1+e.rng.Intn(2); k++ {
			e.editLines(e.pick())
		}
	case op < 13: // add a file beside another
		p := path.Join(path.Dir(e.pick()), fmt.Sprintf("added%d.go", e.n))
		e.write(p, fmt.Sprintf("package x\n\n// added %d\nfunc F%d() {}\n", e.n, e.n))
	case op == 13: // delete a file
		e.r.Git(e.r.Clone, "rm", "-q", e.pick())
	case op == 14: // rename a file within its folder, edited a little
		p := e.pick()
		to := path.Join(path.Dir(p), fmt.Sprintf("renamed%d_%s", e.n, path.Base(p)))
		e.r.Git(e.r.Clone, "mv", p, to)
		if e.rng.Intn(2) == 0 {
			e.editLines(to)
		}
	case op == 15: // move a whole folder
		dir := path.Dir(e.pick())
		if dir == "." {
			return
		}
		e.r.Git(e.r.Clone, "mv", dir, fmt.Sprintf("%s_moved%d", dir, e.n))
	case op == 16: // a file becomes a folder
		p := e.pick()
		e.r.Git(e.r.Clone, "rm", "-q", p)
		e.write(p+"/README", "was a file\n")
	case op == 17: // mode change
		p := filepath.Join(e.r.Clone, filepath.FromSlash(e.pick()))
		st, err := os.Stat(p)
		if err == nil {
			_ = os.Chmod(p, st.Mode()^0o111)
		}
	default: // add a file in a new folder
		e.write(fmt.Sprintf("new%d/doc.go", e.n), "package new\n")
	}
}

// editLines replaces, inserts or deletes a few lines of a text file.
func (e *editor) editLines(p string) {
	full := filepath.Join(e.r.Clone, filepath.FromSlash(p))
	data, err := os.ReadFile(full)
	if err != nil || isBinary(data) {
		return
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) == 0 {
		return
	}
	i := e.rng.Intn(len(lines))
	switch e.rng.Intn(3) {
	case 0:
		lines[i] = fmt.Sprintf("// edit %d\n", e.n)
	case 1:
		lines = slices.Insert(lines, i, fmt.Sprintf("// inserted %d\n", e.n))
	case 2:
		lines = slices.Delete(lines, i, min(len(lines), i+1+e.rng.Intn(3)))
	}
	e.write(p, strings.Join(lines, ""))
}

func (e *editor) write(p, content string) {
	full := filepath.Join(e.r.Clone, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		panic(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		panic(err)
	}
}
