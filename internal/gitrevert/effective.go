package gitrevert

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/gitrepo"
)

// revertLine finds a revert's message line naming the commit it reverts,
// in every form git and the common forges write:
//
//	This reverts commit <sha>.                  git revert, GitHub, changeops
//	This reverts commit <sha>, reversing
//	changes made to <parent>.                   a merge reverted by git revert -m,
//	                                            or GitHub's Revert button
//	This reverts commit <sha>                   GitLab (no full stop)
//	This reverts commit <abbrev> (<subject>, <date>).  git revert --reference
//
// A message may hold several (a squash of reverts). GitLab's "This
// reverts merge request !12" names no commit and is not recognised.
var revertLine = regexp.MustCompile(`(?m)^[ \t]*This reverts commit (?:([0-9a-f]{40})\b(?:,\s+reversing\s+changes\s+made\s+to\s+([0-9a-f]{40})\b)?|([0-9a-f]{7,39}) \()`)

// Reverted is a commit a revert's message says it reverts.
type Reverted struct {
	// Commit is the reverted commit: 40 hex digits, or at least 7 from
	// git revert --reference (Full is false then).
	Commit string
	Full   bool
	// Mainline is the parent a reverted merge's changes were reversed
	// against, when the message says so.
	Mainline string
}

// Matches says whether r names sha (a full hash).
func (r Reverted) Matches(sha string) bool {
	if r.Full {
		return r.Commit == sha
	}
	return strings.HasPrefix(sha, r.Commit)
}

// Reverts lists the commits a message says it reverts, in order.
func Reverts(message string) []Reverted {
	var out []Reverted
	for _, m := range revertLine.FindAllStringSubmatch(message, -1) {
		if m[1] != "" {
			out = append(out, Reverted{Commit: m[1], Full: true, Mainline: m[2]})
		} else {
			out = append(out, Reverted{Commit: m[3]})
		}
	}
	return out
}

// RevertedBy returns the first commit a revert commit's message names in
// full as the one it reverts.
func RevertedBy(message string) (string, bool) {
	for _, r := range Reverts(message) {
		if r.Full {
			return r.Commit, true
		}
	}
	return "", false
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
	undoes := map[string][]string{} // a later revert → the changes it undid
	for _, sha := range later {
		y, err := repo.CommitObject(plumbing.NewHash(sha))
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", sha, err)
		}
		for _, rv := range Reverts(y.Message) {
			x := rv.Commit
			if !rv.Full {
				h, err := repo.ResolveRevision(plumbing.Revision(x))
				if err != nil {
					continue // not a commit this clone has
				}
				x = h.String()
			}
			if targets, ok := undoes[x]; ok {
				// The revert was reverted: its changes are back.
				undone = slices.DeleteFunc(undone, func(s string) bool { return slices.Contains(targets, s) })
				continue
			}
			xc, err := repo.CommitObject(plumbing.NewHash(x))
			if err != nil {
				continue // a revert of a commit this clone never had
			}
			inHistory := x == commit
			if !inHistory {
				if inHistory, err = xc.IsAncestor(c); err != nil {
					return nil, fmt.Errorf("is %.7s in the history of %.7s: %w", x, commit, err)
				}
			}
			if !inHistory || slices.Contains(undone, x) {
				continue
			}
			// Subtract undoes a change against its first parent, as
			// `git revert -m 1` and GitHub's Revert button do; a merge
			// reverted against another parent is a different change.
			if rv.Mainline != "" && (xc.NumParents() == 0 || xc.ParentHashes[0].String() != rv.Mainline) {
				return nil, fmt.Errorf("%.7s reverts merge %.7s against its parent %.7s, not its first parent: "+
					"changeops subtracts only first-parent reverts; revert it again with git revert -m 1", sha, x, rv.Mainline)
			}
			undone = append(undone, x)
			undoes[sha] = append(undoes[sha], x)
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
func Subtract(ctx context.Context, repo *git.Repository, commit string, undone []string) (plumbing.Hash, error) {
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", commit, err)
	}
	tree := c.TreeHash
	for _, x := range undone {
		res, err := InverseOnTree(ctx, repo, plumbing.NewHash(x), tree)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("undo %.7s in the tree of %.7s: %w", x, commit, err)
		}
		if len(res.Conflicts) > 0 {
			return plumbing.ZeroHash, &DependsError{Commit: commit, Reverted: x, Conflicts: res.Described()}
		}
		tree = res.Tree
	}
	return tree, nil
}
