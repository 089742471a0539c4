package gitrevert

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/gitrepo"
)

// revertLine finds git's "This reverts commit <sha>." in a message, whoever
// wrote the revert (changeops, `git revert`, a person).
var revertLine = regexp.MustCompile(`(?m)^This reverts commit ([0-9a-f]{40})\.`)

// RevertedBy returns the commit a revert commit's message says it reverts.
func RevertedBy(message string) (string, bool) {
	m := revertLine.FindStringSubmatch(message)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Undone lists, oldest first, the changes in commit's history (commit
// included) that a revert merged after it on the branch has undone: main
// holds A then B, A is reverted by R after B, so B's effective tree is
// tree(B) minus A. A revert of such a revert puts the change back, so the
// later one cancels the earlier. Reverts already in commit's history are in
// its tree and need nothing. A commit that is not on head's first-parent
// chain (history rewritten) has nothing undone.
func Undone(repo *git.Repository, commit, head string) ([]string, error) {
	later, found, err := gitrepo.FirstParentsSince(repo, head, commit, 0)
	if err != nil || !found {
		return nil, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", commit, err)
	}
	var undone []string
	undoes := map[string]string{} // a later revert → the change it undid
	for _, sha := range later {
		y, err := repo.CommitObject(plumbing.NewHash(sha))
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", sha, err)
		}
		x, ok := RevertedBy(y.Message)
		if !ok {
			continue
		}
		if target, ok := undoes[x]; ok {
			undone = slices.DeleteFunc(undone, func(s string) bool { return s == target }) // the revert was reverted
			continue
		}
		inHistory := x == commit
		if !inHistory {
			xc, err := repo.CommitObject(plumbing.NewHash(x))
			if err != nil {
				continue // a revert of a commit this clone never had
			}
			if inHistory, err = xc.IsAncestor(c); err != nil {
				return nil, fmt.Errorf("is %.7s in the history of %.7s: %w", x, commit, err)
			}
		}
		if inHistory && !slices.Contains(undone, x) {
			undone = append(undone, x)
			undoes[sha] = x
		}
	}
	return undone, nil
}

// DependsError says the effective tree cannot be built: the commit's tree
// builds on a change that has since been reverted.
type DependsError struct {
	Commit    string   // the commit being deployed
	Reverted  string   // the reverted change it depends on
	Conflicts []string // where the subtraction conflicts
}

func (e *DependsError) Error() string {
	return fmt.Sprintf("commit %.7s depends on %.7s, which was reverted: undoing it conflicts in %v; "+
		"revert or rework %.7s on the branch so it no longer builds on the reverted change",
		e.Commit, e.Reverted, e.Conflicts, e.Commit)
}

// Subtract returns tree(commit) with each change in undone undone, in
// order, computed in memory (objects land in the store, no commit, no
// reference). A conflict is a *DependsError.
func Subtract(repo *git.Repository, commit string, undone []string) (plumbing.Hash, error) {
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", commit, err)
	}
	tree := c.TreeHash
	for _, x := range undone {
		res, err := InverseOnTree(repo, plumbing.NewHash(x), tree)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("undo %.7s in the tree of %.7s: %w", x, commit, err)
		}
		if len(res.Conflicts) > 0 {
			return plumbing.ZeroHash, &DependsError{Commit: commit, Reverted: x, Conflicts: res.Conflicts}
		}
		tree = res.Tree
	}
	return tree, nil
}
