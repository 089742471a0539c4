package gitrevert

import (
	"fmt"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// writeTree stores the trees for a flat path → entry map and returns the
// root's hash. Every tree is checked before it is stored: a name that is
// both a file and a folder (two entries of one name, which git fsck
// reports as duplicateEntries and a remote with receive.fsckObjects
// refuses) or a name git forbids is an error, never a tree. Callers
// report such paths as conflicts first; this is the last guard.
func writeTree(s storer.EncodedObjectStorer, entries map[string]entry) (plumbing.Hash, error) {
	files := map[string]entry{}
	dirs := map[string]map[string]entry{}
	for path, e := range entries {
		dir, rest, nested := strings.Cut(path, "/")
		if !nested {
			files[path] = e
			continue
		}
		if dirs[dir] == nil {
			dirs[dir] = map[string]entry{}
		}
		dirs[dir][rest] = e
	}
	var t object.Tree
	for name, e := range files {
		t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: e.mode, Hash: e.hash})
	}
	for name, sub := range dirs {
		h, err := writeTree(s, sub)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	// git orders entries by name, a folder's name as if it ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(t.Entries, func(i, j int) bool { return key(t.Entries[i]) < key(t.Entries[j]) })
	if err := checkTree(t.Entries); err != nil {
		return plumbing.ZeroHash, err
	}
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// checkTree is git fsck's check of one tree's entries, in git's order:
// no two entries share a name, and no name is empty, ".", ".." or holds
// a "/".
func checkTree(entries []object.TreeEntry) error {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		switch {
		case e.Name == "" || e.Name == "." || e.Name == ".." || strings.Contains(e.Name, "/"):
			return fmt.Errorf("write tree: invalid entry name %q", e.Name)
		case seen[e.Name]:
			return fmt.Errorf("write tree: two entries named %q", e.Name)
		}
		seen[e.Name] = true
	}
	return nil
}
