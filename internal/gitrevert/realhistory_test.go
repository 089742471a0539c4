package gitrevert

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// realModules are Go modules whose released versions make real
// histories: each version a commit, oldest first. The versions are pinned
// so that every machine compares the same histories; moduleZips fetches
// them from the module proxy, as the build fetches its own modules.
var realModules = []realModule{
	{"golang.org/x/time", []string{"v0.10.0", "v0.11.0", "v0.15.0", "v0.16.0"}},
	{"go.opentelemetry.io/otel/trace", []string{"v1.34.0", "v1.35.0", "v1.45.0", "v1.47.0"}},
	{"golang.org/x/sync", []string{"v0.13.0", "v0.14.0", "v0.20.0", "v0.22.0", "v0.24.0"}},
	{"github.com/spf13/cobra", []string{"v1.9.1", "v1.10.2"}},
	{"github.com/sirupsen/logrus", []string{"v1.9.3", "v1.9.4", "v1.10.2"}},
	{"go.opentelemetry.io/otel/metric", []string{"v1.34.0", "v1.35.0", "v1.45.0", "v1.47.0"}},
}

type realModule struct {
	path     string
	versions []string // oldest first
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
	mods := realModules
	if testing.Short() {
		mods = mods[:2]
	}
	var total counts
	for _, mod := range mods {
		zips := moduleZips(t, mod)
		c := checkRealHistory(t, mod.path, zips)
		t.Logf("%s: %d versions + %d edits: %d reverts compared: %d clean and identical, %d conflicts in both (%d skipped: git crashed)",
			mod.path, len(zips), editsPerHistory, c.compared, c.clean, c.conflicts, c.gitCrashed)
		total.add(c)
	}
	t.Logf("%d real histories: %d reverts compared with git: %d clean and identical, %d conflicts in both (%d skipped: git crashed)",
		len(mods), total.compared, total.clean, total.conflicts, total.gitCrashed)
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

// moduleZips returns the zips of a module's pinned versions, oldest
// first: `go mod download` finds them in the module cache or fetches them
// from the module proxy. It runs outside this module, so that nothing is
// added to go.mod or go.sum.
func moduleZips(t *testing.T, m realModule) []string {
	t.Helper()
	args := []string{"mod", "download", "-json"}
	for _, v := range m.versions {
		args = append(args, m.path+"@"+v)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	zips := map[string]string{}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var d struct{ Version, Zip, Error string }
		if derr := dec.Decode(&d); derr == io.EOF {
			break
		} else if derr != nil {
			t.Fatalf("go %s: read its output: %v", strings.Join(args, " "), derr)
		}
		if d.Error != "" {
			t.Fatalf("go %s: %s@%s: %s", strings.Join(args, " "), m.path, d.Version, d.Error)
		}
		zips[d.Version] = d.Zip
	}
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	var ordered []string
	for _, v := range m.versions {
		if zips[v] == "" {
			t.Fatalf("go %s gave no zip of %s@%s", strings.Join(args, " "), m.path, v)
		}
		ordered = append(ordered, zips[v])
	}
	return ordered
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
