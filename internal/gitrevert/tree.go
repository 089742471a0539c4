package gitrevert

import (
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// writeTree stores the trees for a flat path → entry map and returns the
// root's hash.
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
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}
