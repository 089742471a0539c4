// Package gitrevert builds revert commits with go-git, which has no revert
// of its own: the inverse of a commit C (against its first parent, like
// `git revert -m 1`) applied on top of a branch head, path by path as a
// three-way merge with base = C, ours = head and theirs = parent(C). Text
// files merge line by line; binary files, symlinks and submodules only
// whole. Renames are found as git finds them (go-git's port of git's rename
// detection): C's own renames are undone onto the branch's version of the
// file, and a file the branch renamed since C gets the inverse at its new
// path. Git's directory-rename detection is not emulated: where a revert
// puts a file back into a folder the branch has since moved wholesale,
// Inverse restores the old path and git reports a conflict. A conflict is
// a result listing the paths, not an error.
package gitrevert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/epiclabs-io/diff3"
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
	Conflicts []string      // sorted
	// Changed is false when head already holds the inverse (nothing to do).
	Changed bool
}

// entry is a path's blob (or submodule commit) and mode in a tree.
type entry struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// Inverse computes head's tree with commit's change undone. Blobs and
// trees it creates are written to repo's object store; nothing else changes.
func Inverse(repo *git.Repository, commit, head plumbing.Hash) (Result, error) {
	h, err := repo.CommitObject(head)
	if err != nil {
		return Result{}, fmt.Errorf("read head %s: %w", head, err)
	}
	return InverseOnTree(repo, commit, h.TreeHash)
}

// InverseOnTree is Inverse on any tree, committed or not: the effective
// tree subtracts reverted changes one after another without a commit.
func InverseOnTree(repo *git.Repository, commit, onto plumbing.Hash) (Result, error) {
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

	m := merger{repo: repo, result: cloneEntries(ours)}
	// C's own renames, and renames on the branch since C, found as git's
	// rename detection finds them (similarity of 50% or more).
	renamedByC, err := detectRenames(repo.Storer, theirs, base) // parent path → C path
	if err != nil {
		return Result{}, err
	}
	movedSince, err := detectRenames(repo.Storer, base, ours) // C path → head path
	if err != nil {
		return Result{}, err
	}
	undo := map[string]string{} // C path → parent path, for C's renames
	for old, nw := range renamedByC {
		undo[nw] = old
	}
	for _, path := range changedPaths(base, theirs) {
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
	if len(m.conflicts) > 0 {
		sort.Strings(m.conflicts)
		return Result{Conflicts: m.conflicts}, nil
	}
	tree, err := writeTree(repo.Storer, m.result)
	if err != nil {
		return Result{}, err
	}
	return Result{Tree: tree, Changed: tree != onto}, nil
}

type merger struct {
	repo      *git.Repository
	result    map[string]entry
	conflicts []string
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
			m.conflicts = append(m.conflicts, oursPath)
			return nil
		}
		path = oursPath
	}
	switch {
	case ook == bok && o == b: // head still has C's version: take the parent's
		m.set(path, t, tok)
	case ook == tok && o == t: // head already has the parent's version
	case bok && ook && tok && mergeable(b, o, t):
		merged, ok, err := m.mergeText(b.hash, o.hash, t.hash)
		if err != nil {
			return fmt.Errorf("merge %s: %w", path, err)
		}
		mode, modeOK := mergeMode(b.mode, o.mode, t.mode)
		if !ok || !modeOK {
			m.conflicts = append(m.conflicts, path)
			return nil
		}
		m.result[path] = entry{hash: merged, mode: mode}
	case bok && ook && tok && b.hash == t.hash: // C changed only the mode
		mode, ok := mergeMode(b.mode, o.mode, t.mode)
		if !ok {
			m.conflicts = append(m.conflicts, path)
			return nil
		}
		m.result[path] = entry{hash: o.hash, mode: mode}
	default: // added/deleted on one side and changed on the other, or binary
		m.conflicts = append(m.conflicts, path)
	}
	return nil
}

// revertRename undoes C's rename of oldPath to newPath: the branch's
// version of the file (at oursPath) goes back to oldPath, with C's edits
// made in the rename undone too.
func (m *merger) revertRename(newPath, oldPath, oursPath string, b entry, ours map[string]entry, t entry) error {
	o, ook := ours[oursPath]
	_, taken := ours[oldPath]
	if !ook || taken || oursPath != newPath { // deleted, replaced, or renamed again since
		m.conflicts = append(m.conflicts, newPath, oldPath)
		return nil
	}
	merged := o
	switch {
	case o.hash == b.hash:
		merged.hash = t.hash
	case t.hash == b.hash:
	case mergeable(b, o, t):
		h, ok, err := m.mergeText(b.hash, o.hash, t.hash)
		if err != nil {
			return fmt.Errorf("merge %s: %w", oldPath, err)
		}
		if !ok {
			m.conflicts = append(m.conflicts, oldPath)
			return nil
		}
		merged.hash = h
	default:
		m.conflicts = append(m.conflicts, oldPath)
		return nil
	}
	mode, ok := mergeMode(b.mode, o.mode, t.mode)
	if !ok {
		m.conflicts = append(m.conflicts, oldPath)
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

// mergeText merges blob contents line by line; ok is false on a conflict
// or when a side is binary.
func (m *merger) mergeText(b, o, t plumbing.Hash) (plumbing.Hash, bool, error) {
	var texts [3][]byte
	for i, h := range []plumbing.Hash{b, o, t} {
		data, err := readBlob(m.repo, h)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		if isBinary(data) {
			return plumbing.ZeroHash, false, nil
		}
		texts[i] = data
	}
	merged, ok := mergeLines(texts[0], texts[1], texts[2])
	if !ok {
		return plumbing.ZeroHash, false, nil
	}
	h, err := writeBlob(m.repo.Storer, merged)
	return h, err == nil, err
}

// mergeLines merges two texts line by line against their base; ok is false
// on a conflict. diff3 takes (a, o, b): ours, base, theirs. LCS alignment,
// not Myers: where repeated lines make the alignment ambiguous, this
// library's Myers can merge differently from git's xdiff (a silently
// different file), while LCS at worst reports a conflict git would not (a
// person decides).
func mergeLines(base, ours, theirs []byte) (merged []byte, ok bool) {
	blocks := diff3.Diff3Merge(splitLines(ours), splitLines(base), splitLines(theirs), true)
	var out bytes.Buffer
	for _, blk := range blocks {
		if blk.Conflict != nil {
			return nil, false
		}
		for _, line := range blk.Ok {
			out.WriteString(line)
		}
	}
	return out.Bytes(), true
}

// splitLines keeps each line's newline, so a missing final newline merges
// as a change of the last line, as git does.
func splitLines(data []byte) []string {
	s := string(data)
	var lines []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// isBinary is git's heuristic: a NUL byte in the first 8000 bytes.
func isBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0
}

// detectRenames lists the renames from a to b (old path → new path) with
// go-git's port of git's rename detection. That port only pairs regular
// files, where git pairs executables too, so it runs on copies of the trees
// with every executable made regular (a mode change does not hide a rename
// from git either).
func detectRenames(s storer.EncodedObjectStorer, a, b map[string]entry) (map[string]string, error) {
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
	changes, err := object.DiffTreeWithOptions(context.Background(), trees[0], trees[1], object.DefaultDiffTreeOptions)
	if err != nil {
		return nil, fmt.Errorf("detect renames: %w", err)
	}
	out := map[string]string{}
	for _, ch := range changes {
		if ch.From.Name != "" && ch.To.Name != "" && ch.From.Name != ch.To.Name {
			out[ch.From.Name] = ch.To.Name
		}
	}
	return out, nil
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
