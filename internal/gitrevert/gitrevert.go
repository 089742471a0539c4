// Package gitrevert builds revert commits with go-git, which has no revert
// of its own: the inverse of a commit C (against its first parent, like
// `git revert -m 1`) applied on top of a branch head, path by path as a
// three-way merge with base = C, ours = head and theirs = parent(C). Text
// files merge line by line; binary files, symlinks and submodules only
// whole. Renames are found as git finds them (go-git's port of git's rename
// detection): C's own renames are undone onto the branch's version of the
// file, and a file the branch renamed since C gets the inverse at its new
// path. Renames are looked for up to a limit, as git does
// (Limits.RenameLimit). Where one side moved a folder wholesale and the
// other adds a file to the old folder, git's directory-rename detection
// reports a "file location" conflict; so does Inverse. Two entries that
// would share a name (a file, symlink or submodule where the result also
// has a folder) are a conflict, as in git; no tree is written with them.
// A conflict is a result listing the paths, not an error.
package gitrevert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Result is the tree of head with C's change undone, or the paths that
// conflict.
type Result struct {
	Tree      plumbing.Hash // set when Conflicts is empty
	Conflicts []string      // paths, sorted
	// Reasons says why a path conflicts, for every conflict other than
	// lines both sides changed: "file/directory: ...", "file location:
	// ...", "too large to merge", "binary".
	Reasons map[string]string
	// Changed is false when head already holds the inverse (nothing to do).
	Changed bool
}

// Described lists the conflicts for people: each path, with its reason
// where it has one ("a (file/directory: the result also has a/c)").
func (r Result) Described() []string {
	out := make([]string, 0, len(r.Conflicts))
	for _, p := range r.Conflicts {
		if why := r.Reasons[p]; why != "" {
			p += " (" + why + ")"
		}
		out = append(out, p)
	}
	return out
}

// entry is a path's blob (or submodule commit) and mode in a tree.
type entry struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// Inverse computes head's tree with commit's change undone. Blobs and
// trees it creates are written to repo's object store; nothing else
// changes. It stops, with ctx's error, soon after ctx ends.
func Inverse(ctx context.Context, repo *git.Repository, commit, head plumbing.Hash) (Result, error) {
	return inverse(ctx, repo, commit, head, DefaultLimits)
}

func inverse(ctx context.Context, repo *git.Repository, commit, head plumbing.Hash, lim Limits) (Result, error) {
	h, err := repo.CommitObject(head)
	if err != nil {
		return Result{}, fmt.Errorf("read head %s: %w", head, err)
	}
	return inverseOnTree(ctx, repo, commit, h.TreeHash, lim)
}

// InverseOnTree is Inverse on any tree, committed or not: the effective
// tree subtracts reverted changes one after another without a commit.
func InverseOnTree(ctx context.Context, repo *git.Repository, commit, onto plumbing.Hash) (Result, error) {
	return inverseOnTree(ctx, repo, commit, onto, DefaultLimits)
}

func inverseOnTree(ctx context.Context, repo *git.Repository, commit, onto plumbing.Hash, lim Limits) (Result, error) {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return Result{}, fmt.Errorf("read commit %s: %w", commit, err)
	}
	base, err := flattenCommit(c)
	if err != nil {
		return Result{}, err
	}
	theirs := map[string]entry{}
	if c.NumParents() > 0 {
		p, err := c.Parent(0)
		if err != nil {
			return Result{}, fmt.Errorf("read parent of %s: %w", commit, err)
		}
		if theirs, err = flattenCommit(p); err != nil {
			return Result{}, err
		}
	}
	oursTree, err := repo.TreeObject(onto)
	if err != nil {
		return Result{}, fmt.Errorf("read tree %s: %w", onto, err)
	}
	ours, err := flattenTree(oursTree)
	if err != nil {
		return Result{}, err
	}
	return threeWay(ctx, repo, base, ours, theirs, onto, lim)
}

// threeWay merges the change from base to theirs onto ours (whose tree is
// onto). A revert is base = C, theirs = parent(C); a pull request's merge
// is base = the merge base, theirs = the pull request's head (Merge).
func threeWay(ctx context.Context, repo *git.Repository, base, ours, theirs map[string]entry, onto plumbing.Hash, lim Limits) (Result, error) {
	m := merger{ctx: ctx, repo: repo, lim: lim, result: cloneEntries(ours), reasons: map[string]string{}}
	// C's own renames, and renames on the branch since C, found as git's
	// rename detection finds them (similarity of 50% or more).
	renamedByC, err := detectRenames(ctx, repo.Storer, theirs, base, lim.RenameLimit) // parent path → C path
	if err != nil {
		return Result{}, err
	}
	movedSince, err := detectRenames(ctx, repo.Storer, base, ours, lim.RenameLimit) // C path → head path
	if err != nil {
		return Result{}, err
	}
	undo := map[string]string{} // C path → parent path, for C's renames
	for old, nw := range renamedByC {
		undo[nw] = old
	}
	for _, path := range changedPaths(base, theirs) {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		if _, ok := renamedByC[path]; ok {
			continue // handled with its new path
		}
		oursPath := path
		if q, ok := movedSince[path]; ok {
			oursPath = q
		}
		if oldPath, ok := undo[path]; ok {
			if err := m.revertRename(path, oldPath, oursPath, base[path], ours, theirs[oldPath]); err != nil {
				return Result{}, err
			}
			continue
		}
		if err := m.mergePath(path, oursPath, base, ours, theirs); err != nil {
			return Result{}, err
		}
	}
	m.dirRenameConflicts(base, ours, theirs, undo, movedSince)
	m.nameConflicts()
	if len(m.conflicts) > 0 {
		sort.Strings(m.conflicts)
		m.conflicts = slices.Compact(m.conflicts)
		return Result{Conflicts: m.conflicts, Reasons: m.reasons}, nil
	}
	tree, err := writeTree(repo.Storer, m.result)
	if err != nil {
		return Result{}, err
	}
	return Result{Tree: tree, Changed: tree != onto}, nil
}

type merger struct {
	ctx       context.Context
	repo      *git.Repository
	lim       Limits
	result    map[string]entry
	conflicts []string
	reasons   map[string]string // path → why, beyond "both changed these lines"
}

// conflict records a conflicting path and why, unless it is lines both
// sides changed ("content", the ordinary conflict).
func (m *merger) conflict(path, why string) {
	m.conflicts = append(m.conflicts, path)
	if why != "" && why != "content" && m.reasons[path] == "" {
		m.reasons[path] = why
	}
}

// mergePath is the three-way merge of one path the commit changed; the
// branch holds it at oursPath (path, unless renamed since), where the
// result goes.
func (m *merger) mergePath(path, oursPath string, base, ours, theirs map[string]entry) error {
	b, bok := base[path]
	o, ook := ours[oursPath]
	t, tok := theirs[path]
	if oursPath != path {
		if !tok {
			// Undoing an addition of a file the branch has renamed since:
			// git calls that a rename/delete conflict.
			m.conflict(oursPath, "rename/delete: renamed to "+oursPath+" since")
			return nil
		}
		path = oursPath
	}
	switch {
	case ook == bok && o == b: // head still has C's version: take the parent's
		m.set(path, t, tok)
	case ook == tok && o == t: // head already has the parent's version
	case bok && ook && tok && mergeable(b, o, t):
		merged, why, err := m.mergeText(b.hash, o.hash, t.hash)
		if err != nil {
			return fmt.Errorf("merge %s: %w", path, err)
		}
		mode, modeOK := mergeMode(b.mode, o.mode, t.mode)
		if why != "" || !modeOK {
			m.conflict(path, why)
			return nil
		}
		m.result[path] = entry{hash: merged, mode: mode}
	case bok && ook && tok && b.hash == t.hash: // C changed only the mode
		mode, ok := mergeMode(b.mode, o.mode, t.mode)
		if !ok {
			m.conflict(path, "mode")
			return nil
		}
		m.result[path] = entry{hash: o.hash, mode: mode}
	default: // added/deleted on one side and changed on the other, or not text
		m.conflict(path, kindConflict(b, o, t, bok, ook, tok))
	}
	return nil
}

// kindConflict names a conflict that is not a line merge's, as git does.
func kindConflict(b, o, t entry, bok, ook, tok bool) string {
	switch {
	case !bok && ook && tok:
		return "add/add"
	case bok && (!ook || !tok):
		return "modify/delete"
	}
	for _, e := range []entry{b, o, t} {
		switch e.mode {
		case filemode.Symlink:
			return "symlink"
		case filemode.Submodule:
			return "submodule"
		}
	}
	return "binary"
}

// revertRename undoes C's rename of oldPath to newPath: the branch's
// version of the file (at oursPath) goes back to oldPath, with C's edits
// made in the rename undone too.
func (m *merger) revertRename(newPath, oldPath, oursPath string, b entry, ours map[string]entry, t entry) error {
	o, ook := ours[oursPath]
	_, taken := ours[oldPath]
	if !ook || taken || oursPath != newPath { // deleted, replaced, or renamed again since
		why := "rename: " + newPath + " deleted, replaced or renamed since"
		m.conflict(newPath, why)
		m.conflict(oldPath, why)
		return nil
	}
	merged := o
	switch {
	case o.hash == b.hash:
		merged.hash = t.hash
	case t.hash == b.hash:
	case mergeable(b, o, t):
		h, why, err := m.mergeText(b.hash, o.hash, t.hash)
		if err != nil {
			return fmt.Errorf("merge %s: %w", oldPath, err)
		}
		if why != "" {
			m.conflict(oldPath, why)
			return nil
		}
		merged.hash = h
	default:
		m.conflict(oldPath, kindConflict(b, o, t, true, true, true))
		return nil
	}
	mode, ok := mergeMode(b.mode, o.mode, t.mode)
	if !ok {
		m.conflict(oldPath, "mode")
		return nil
	}
	merged.mode = mode
	delete(m.result, oursPath)
	m.result[oldPath] = merged
	return nil
}

func (m *merger) set(path string, e entry, present bool) {
	if present {
		m.result[path] = e
	} else {
		delete(m.result, path)
	}
}

// mergeable says whether the three versions are regular files whose
// contents can merge line by line (not binary).
func mergeable(b, o, t entry) bool {
	for _, e := range []entry{b, o, t} {
		if !e.mode.IsFile() || e.mode == filemode.Symlink {
			return false
		}
	}
	return true
}

// mergeMode is the three-way merge of a file mode.
func mergeMode(b, o, t filemode.FileMode) (filemode.FileMode, bool) {
	switch {
	case o == b:
		return t, true
	case t == b || t == o:
		return o, true
	}
	return 0, false
}

// mergeText merges blob contents line by line: the merged blob, or why
// it conflicts ("content", "binary", "too large to merge ...").
func (m *merger) mergeText(b, o, t plumbing.Hash) (plumbing.Hash, string, error) {
	var texts [3][]byte
	for i, h := range []plumbing.Hash{b, o, t} {
		blob, err := m.repo.BlobObject(h)
		if err != nil {
			return plumbing.ZeroHash, "", fmt.Errorf("read blob %s: %w", h, err)
		}
		if m.lim.MaxMergeBytes > 0 && blob.Size > m.lim.MaxMergeBytes {
			return plumbing.ZeroHash, tooLarge(blob.Size, m.lim), nil // not even read
		}
		if texts[i], err = readBlob(m.repo, h); err != nil {
			return plumbing.ZeroHash, "", err
		}
	}
	merged, why, err := mergeLines(m.ctx, texts[0], texts[1], texts[2], m.lim)
	if err != nil || why != "" {
		return plumbing.ZeroHash, why, err
	}
	h, err := writeBlob(m.repo.Storer, merged)
	return h, "", err
}

// renameScore is git's minimum similarity for a rename, 50%.
const renameScore = 50

// detectRenames lists the renames from a to b (old path → new path) with
// go-git's port of rename detection. That port only pairs regular files,
// where git pairs executables too, so it runs on copies of the trees with
// every executable made regular (a mode change does not hide a rename from
// git either). Like git, exact renames (same content) are always found;
// renames by similarity only while the files added times the files
// deleted, beyond those, stay within limit² (limit ≤ 0: no limit).
func detectRenames(ctx context.Context, s storer.EncodedObjectStorer, a, b map[string]entry, limit int) (map[string]string, error) {
	var trees [2]*object.Tree
	for i, m := range []map[string]entry{a, b} {
		flat := make(map[string]entry, len(m))
		for p, e := range m {
			if e.mode == filemode.Executable {
				e.mode = filemode.Regular
			}
			flat[p] = e
		}
		h, err := writeTree(s, flat)
		if err != nil {
			return nil, err
		}
		if trees[i], err = object.GetTree(s, h); err != nil {
			return nil, err
		}
	}
	changes, err := object.DiffTreeWithOptions(ctx, trees[0], trees[1], nil)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err() // go-git says "operation canceled" for a deadline too
		}
		return nil, fmt.Errorf("detect renames: %w", err)
	}
	// go-git's own RenameLimit compares max(added, deleted) with the limit
	// and also truncates its pairing of identical files; git's rule is
	// applied here instead, on what exact renames leave.
	opts := &object.DiffTreeOptions{DetectRenames: true, RenameScore: renameScore, OnlyExactRenames: true}
	exact, err := object.DetectRenames(changes, opts)
	if err != nil {
		return nil, fmt.Errorf("detect renames: %w", err)
	}
	var added, deleted int
	for _, ch := range exact {
		switch {
		case ch.From.Name == "":
			added++
		case ch.To.Name == "":
			deleted++
		}
	}
	renames := exact
	if added > 0 && deleted > 0 && (limit <= 0 || int64(added)*int64(deleted) <= int64(limit)*int64(limit)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opts.OnlyExactRenames = false
		if renames, err = object.DetectRenames(changes, opts); err != nil {
			return nil, fmt.Errorf("detect renames: %w", err)
		}
	}
	out := map[string]string{}
	for _, ch := range renames {
		if ch.From.Name != "" && ch.To.Name != "" && ch.From.Name != ch.To.Name {
			out[ch.From.Name] = ch.To.Name
		}
	}
	return out, nil
}

// dirRenames finds the folders moved wholesale from before to after, as
// git's directory-rename detection does: a folder no file of which is
// left in after, whose files' renames went to one folder more than to any
// other (old folder → new folder; ties are no rename). renames are the
// file renames from before to after.
func dirRenames(renames map[string]string, after map[string]entry) map[string]string {
	present := map[string]bool{}
	for p := range after {
		for d := path.Dir(p); d != "." && !present[d]; d = path.Dir(d) {
			present[d] = true
		}
	}
	counts := map[string]map[string]int{}
	for from, to := range renames {
		od, nd := path.Dir(from), path.Dir(to)
		// The part of the path that changed: a/b/x/f → c/x/f moved a/b
		// to c (the common trailing folders are not part of the move).
		for od != "." && nd != "." && path.Base(od) == path.Base(nd) {
			od, nd = path.Dir(od), path.Dir(nd)
		}
		// The folder and each parent that is gone too moved with it.
		for od != "." && od != nd && !present[od] {
			if counts[od] == nil {
				counts[od] = map[string]int{}
			}
			counts[od][nd]++
			if nd == "." {
				break
			}
			od, nd = path.Dir(od), path.Dir(nd)
		}
	}
	out := map[string]string{}
	for od, targets := range counts {
		best, n, tie := "", 0, false
		for nd, c := range targets {
			switch {
			case c > n:
				best, n, tie = nd, c, false
			case c == n:
				tie = true
			}
		}
		if !tie {
			out[od] = best
		}
	}
	return out
}

// dirRenameConflicts reports git's "file location" conflicts: a file one
// side puts in a folder the other side moved wholesale. Git moves it into
// the new folder and asks a person to confirm; here it is a conflict.
// undo holds the parent's renames from C (C path → parent path),
// movedSince the branch's (C path → head path).
func (m *merger) dirRenameConflicts(base, ours, theirs map[string]entry, undo, movedSince map[string]string) {
	byTheirs := dirRenames(undo, theirs)
	byOurs := dirRenames(movedSince, ours)
	for d := range byTheirs {
		if _, ok := byOurs[d]; ok { // moved on both sides: git leaves it
			delete(byTheirs, d)
			delete(byOurs, d)
		}
	}
	check := func(side map[string]entry, moved map[string]string, who string) {
		for p := range side {
			if _, ok := base[p]; ok {
				continue
			}
			for d := path.Dir(p); d != "."; d = path.Dir(d) {
				if to, ok := moved[d]; ok {
					m.conflict(p, fmt.Sprintf("file location: in %s/, which %s moved to %s/", d, who, to))
					break
				}
			}
		}
	}
	check(ours, byTheirs, "the revert")
	check(theirs, byOurs, "the branch")
}

// nameConflicts reports paths the result holds both as a file (or
// symlink, or submodule) and as a folder: git's file/directory conflict.
// Such a tree would hold two entries of one name.
func (m *merger) nameConflicts() {
	inside := map[string]string{} // file path → the first path below it
	for p := range m.result {
		for i := 0; i < len(p); i++ {
			if p[i] != '/' {
				continue
			}
			if _, ok := m.result[p[:i]]; ok {
				if q, seen := inside[p[:i]]; !seen || p < q {
					inside[p[:i]] = p
				}
			}
		}
	}
	for d, p := range inside {
		m.conflict(d, "file/directory: the result also has "+p)
	}
}

func changedPaths(a, b map[string]entry) []string {
	var out []string
	for p, e := range a {
		if f, ok := b[p]; !ok || f != e {
			out = append(out, p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func cloneEntries(in map[string]entry) map[string]entry {
	out := make(map[string]entry, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// flattenCommit lists every non-folder entry of a commit's tree by path.
func flattenCommit(c *object.Commit) (map[string]entry, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of %s: %w", c.Hash, err)
	}
	return flattenTree(tree)
}

func flattenTree(tree *object.Tree) (map[string]entry, error) {
	out := map[string]entry{}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("walk tree %s: %w", tree.Hash, err)
		}
		if e.Mode != filemode.Dir {
			out[name] = entry{hash: e.Hash, mode: e.Mode}
		}
	}
}

func readBlob(repo *git.Repository, h plumbing.Hash) ([]byte, error) {
	b, err := repo.BlobObject(h)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func writeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}
