package gitrevert

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/changeops/changeops/internal/gitrepo"
)

// maxPushAttempts bounds how often a push that lost a race is rebuilt on
// the new head.
const maxPushAttempts = 5

// Request asks for the revert of Commit on Branch.
type Request struct {
	Branch  string
	Commit  string // the commit to revert
	Subject string // its subject, for the message
	RunID   string // the change run, for the trailer
	Author  object.Signature
	// BeforePush, when set, runs between building the revert and pushing
	// it (tests use it to push a racing commit).
	BeforePush func(attempt int)
}

// Pushed says what happened on the branch.
type Pushed struct {
	Revert string // the revert commit on the branch, pushed now or found there
	Reused bool   // the branch already held a revert of the commit
	// NoChange: the branch no longer holds the commit's change at all.
	NoChange bool
	// Conflicts are the paths that could not be reverted, each with its
	// reason where it is not lines both sides changed; nothing was pushed.
	Conflicts []string
	Attempts  int
}

// RevertAndPush builds the revert of req.Commit on the branch head and
// pushes it with an explicit refspec. It is idempotent: a revert of the
// commit already on the branch (say, pushed by an attempt that died before
// reporting) is reused, never doubled. A push that loses a race refetches
// and rebuilds on the new head, a bounded number of times.
func RevertAndPush(ctx context.Context, cache *gitrepo.Repo, req Request) (Pushed, error) {
	for attempt := 1; attempt <= maxPushAttempts; attempt++ {
		res, lost, err := revertOnce(ctx, cache, req, attempt)
		if !lost {
			return res, err
		}
	}
	return Pushed{}, fmt.Errorf("push revert of %.7s to %s: the branch kept moving (%d attempts); the next retry tries again", req.Commit, req.Branch, maxPushAttempts)
}

// revertOnce is one attempt of RevertAndPush on the branch head as fetched
// now; lost says its push lost a race with another push to the branch.
func revertOnce(ctx context.Context, cache *gitrepo.Repo, req Request, attempt int) (_ Pushed, lost bool, _ error) {
	g, release, err := cache.Fetch(ctx)
	defer release()
	if err != nil {
		return Pushed{}, false, err
	}
	head, err := gitrepo.Head(g, req.Branch)
	if err != nil {
		return Pushed{}, false, err
	}
	if found, err := findRevert(g, head, req.Commit); err != nil || found != "" {
		return Pushed{Revert: found, Reused: found != "", Attempts: attempt}, false, err
	}
	res, err := Inverse(ctx, g, plumbing.NewHash(req.Commit), plumbing.NewHash(head))
	if err != nil {
		return Pushed{}, false, err
	}
	if len(res.Conflicts) > 0 {
		return Pushed{Conflicts: res.Described(), Attempts: attempt}, false, nil
	}
	if !res.Changed {
		return Pushed{NoChange: true, Attempts: attempt}, false, nil
	}
	revert, err := Commit(g, res.Tree, plumbing.NewHash(head), Message(req.Subject, req.Commit, req.RunID), req.Author, time.Now())
	if err != nil {
		return Pushed{}, false, err
	}
	if req.BeforePush != nil {
		req.BeforePush(attempt)
	}
	if err := cache.Push(ctx, revert, req.Branch); err != nil {
		if lostRace(err) {
			return Pushed{}, true, nil
		}
		return Pushed{}, false, fmt.Errorf("push revert of %.7s to %s: %w", req.Commit, req.Branch, err)
	}
	return Pushed{Revert: revert.String(), Attempts: attempt}, false, nil
}

// findRevert walks the first parents from head back to the reverted commit
// and returns a revert of it, if one is there.
func findRevert(g *git.Repository, head, sha string) (string, error) {
	h := plumbing.NewHash(head)
	for i := 0; i < 10000; i++ {
		if h.String() == sha {
			return "", nil
		}
		c, err := g.CommitObject(h)
		if err != nil {
			return "", fmt.Errorf("walk %s for a revert of %.7s: %w", head, sha, err)
		}
		if IsRevertOf(c.Message, sha) {
			return h.String(), nil
		}
		if c.NumParents() == 0 {
			return "", nil
		}
		h = c.ParentHashes[0]
	}
	return "", nil
}

// lostRace says whether a push failed because the branch moved.
func lostRace(err error) bool {
	if errors.Is(err, git.ErrNonFastForwardUpdate) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"non-fast-forward", "fetch first", "failed to update ref", "stale info"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
