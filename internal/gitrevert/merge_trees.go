package gitrevert

import (
	"context"
	"fmt"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Merge is the tree of merging theirs into ours, as the forge's merge
// button would write it: a pull request's head (theirs) merged into its
// branch's head (ours), with their merge base as the base. It is the same
// three-way merge, path by path, as a revert's (renames, line merges,
// conflicts as results), so a preview of a pull request plans the tree the
// change run will deploy. With several merge bases (criss-cross history)
// the first is used where git would merge them recursively first; such a
// tree may conflict where git's would not, and the preview says so.
func Merge(ctx context.Context, repo *git.Repository, ours, theirs plumbing.Hash) (Result, error) {
	return mergeCommits(ctx, repo, ours, theirs, DefaultLimits)
}

func mergeCommits(ctx context.Context, repo *git.Repository, ours, theirs plumbing.Hash, lim Limits) (Result, error) {
	o, err := repo.CommitObject(ours)
	if err != nil {
		return Result{}, fmt.Errorf("read commit %s: %w", ours, err)
	}
	t, err := repo.CommitObject(theirs)
	if err != nil {
		return Result{}, fmt.Errorf("read commit %s: %w", theirs, err)
	}
	bases, err := o.MergeBase(t)
	if err != nil {
		return Result{}, fmt.Errorf("merge base of %s and %s: %w", ours, theirs, err)
	}
	base := map[string]entry{} // unrelated histories: everything is added
	if len(bases) > 0 {
		if base, err = flattenCommit(bases[0]); err != nil {
			return Result{}, err
		}
	}
	oursEntries, err := flattenCommit(o)
	if err != nil {
		return Result{}, err
	}
	theirsEntries, err := flattenCommit(t)
	if err != nil {
		return Result{}, err
	}
	return threeWay(ctx, repo, base, oursEntries, theirsEntries, o.TreeHash, lim)
}
