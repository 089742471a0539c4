package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// completeMarker marks an exported tree as whole; a folder without it was
// left by a crashed export and is never trusted.
const completeMarker = ".changeops-export-complete"

// Export writes the tree of commit sha into dest, once: a later call finds
// the complete export and returns at once. The tree is written to a sibling
// temporary folder and renamed into place, so dest is either absent or whole.
func Export(repo *git.Repository, sha, dest string) error {
	if Exported(dest) {
		return nil
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return fmt.Errorf("%w: %s", ErrCommitNotFound, sha)
	}
	return ExportTree(repo, c.TreeHash, sha, dest)
}

// Exported says whether dest holds a complete export.
func Exported(dest string) bool {
	_, err := os.Stat(filepath.Join(dest, completeMarker))
	return err == nil
}

// ExportTree is Export for any tree (an effective tree has no commit);
// label names it in errors.
func ExportTree(repo *git.Repository, hash plumbing.Hash, label, dest string) error {
	if Exported(dest) {
		return nil
	}
	tree, err := repo.TreeObject(hash)
	if err != nil {
		return fmt.Errorf("read tree of %s: %w", label, err)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("export %s: %w", label, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export %s: %w", label, err)
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	if err := writeTree(tree, tmp); err != nil {
		return fmt.Errorf("export %s: %w", label, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(label+"\n"), 0o644); err != nil {
		return fmt.Errorf("export %s: %w", label, err)
	}
	// The rename is the only way dest appears, so dest is whole or absent.
	// Another worker (a process sharing the data folder, too) may export
	// the same tree at once: whoever renames second finds dest whole and
	// keeps it, never removing a tree a Pulumi run may be reading.
	if err := os.Rename(tmp, dest); err == nil || Exported(dest) {
		return nil
	}
	// dest exists without the marker: left by a crash before exports
	// were atomic, or by hand. Move it aside (a rename, so a concurrent
	// export sees either it or nothing) and try once more.
	stale := tmp + ".stale"
	if err := os.Rename(dest, stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("export %s: clear %s: %w", label, dest, err)
	}
	defer os.RemoveAll(stale)
	if err := os.Rename(tmp, dest); err != nil && !Exported(dest) {
		return fmt.Errorf("export %s: %w", label, err)
	}
	return nil
}

func writeTree(tree *object.Tree, dir string) error {
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		path := filepath.Join(dir, filepath.FromSlash(name))
		switch entry.Mode {
		case filemode.Dir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case filemode.Submodule:
			// Submodules are not part of the tree's content; skip them.
		case filemode.Symlink:
			target, err := blobString(tree, name)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, path); err != nil {
				return err
			}
		default:
			if err := writeBlob(tree, name, path, entry.Mode); err != nil {
				return err
			}
		}
	}
}

func blobString(tree *object.Tree, name string) (string, error) {
	f, err := tree.File(name)
	if err != nil {
		return "", err
	}
	return f.Contents()
}

func writeBlob(tree *object.Tree, name, path string, mode filemode.FileMode) error {
	f, err := tree.File(name)
	if err != nil {
		return err
	}
	perm := fs.FileMode(0o644)
	if mode == filemode.Executable {
		perm = 0o755
	}
	r, err := f.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// HasFile says whether the tree of sha holds path as a file.
func HasFile(repo *git.Repository, sha, path string) (bool, error) {
	mode, err := entryMode(repo, sha, path)
	return err == nil && mode != filemode.Empty && mode != filemode.Dir, err
}

// IsDir says whether the tree of sha holds path as a folder.
func IsDir(repo *git.Repository, sha, path string) (bool, error) {
	mode, err := entryMode(repo, sha, path)
	return err == nil && mode == filemode.Dir, err
}

// entryMode returns the mode of path in the tree of sha; filemode.Empty
// when there is no such path.
func entryMode(repo *git.Repository, sha, path string) (filemode.FileMode, error) {
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return filemode.Empty, fmt.Errorf("%w: %s", ErrCommitNotFound, sha)
	}
	tree, err := c.Tree()
	if err != nil {
		return filemode.Empty, fmt.Errorf("read tree of %s: %w", sha, err)
	}
	entry, err := tree.FindEntry(path)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return filemode.Empty, nil
	}
	if err != nil {
		return filemode.Empty, fmt.Errorf("look up %s at %s: %w", path, sha, err)
	}
	return entry.Mode, nil
}
