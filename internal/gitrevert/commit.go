package gitrevert

import (
	"fmt"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Message is a revert's commit message: git's own wording, plus a trailer
// naming the change run that made it (how a retried run finds the revert
// it already pushed).
func Message(subject, sha, runID string) string {
	return fmt.Sprintf("Revert %q\n\nThis reverts commit %s.\n\nChangeops-Run: %s\n", subject, sha, runID)
}

// IsRevertOf says whether a commit message is a revert of sha, in any
// form Reverts recognises (a merge reverted by git or GitHub's Revert
// button too).
func IsRevertOf(message, sha string) bool {
	for _, r := range Reverts(message) {
		if r.Matches(sha) {
			return true
		}
	}
	return false
}

// Commit stores a commit of tree on top of parent and returns its hash; it
// changes no reference.
func Commit(repo *git.Repository, tree, parent plumbing.Hash, message string, who object.Signature, when time.Time) (plumbing.Hash, error) {
	who.When = when
	c := &object.Commit{
		Author:       who,
		Committer:    who,
		Message:      message,
		TreeHash:     tree,
		ParentHashes: []plumbing.Hash{parent},
	}
	obj := repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode revert commit: %w", err)
	}
	h, err := repo.Storer.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store revert commit: %w", err)
	}
	return h, nil
}
