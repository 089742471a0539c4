// Package gitrepo keeps one cached bare clone of the infrastructure
// repository and answers the questions a change run asks of git: what is new
// on the branch, what a commit changed, and what its tree holds. Every fetch
// is incremental; the cache is never a working tree, so Pulumi never writes
// into it (workspaces are exported copies). Opened repositories are kept and
// reused (see pool.go): reopening one reloads every pack index.
package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"unicode/utf8"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/changeops/changeops/contract"
)

// ErrCommitNotFound is returned for a revision the remote does not have.
var ErrCommitNotFound = errors.New("commit not found")

// Repo is a cached bare clone of one remote.
type Repo struct {
	url  string
	dir  string
	auth transport.AuthMethod

	mu sync.Mutex // serialises fetches within this process; flock across processes

	pool pool // opened repositories not in use
}

// Options configure a Repo.
type Options struct {
	URL string
	// Dir is where the bare clone lives; created on first use.
	Dir string
	// Username and Password enable HTTP basic auth (a token as password).
	Username, Password string
}

// New returns a Repo; nothing touches the disk or network until first use.
func New(opts Options) *Repo {
	r := &Repo{url: opts.URL, dir: opts.Dir}
	if opts.Username != "" || opts.Password != "" {
		r.auth = &githttp.BasicAuth{Username: opts.Username, Password: opts.Password}
	}
	return r
}

// URL returns the remote's URL.
func (r *Repo) URL() string { return r.url }

// Auth returns the transport auth for pushes by other packages.
func (r *Repo) Auth() transport.AuthMethod { return r.auth }

// lock serialises writers of the cache, across goroutines and processes (a
// worker and a `changeops start` may fetch at once).
func (r *Repo) lock() (func(), error) {
	r.mu.Lock()
	if err := os.MkdirAll(filepath.Dir(r.dir), 0o755); err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("lock git cache: %w", err)
	}
	f, err := os.OpenFile(r.dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("lock git cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		r.mu.Unlock()
		return nil, fmt.Errorf("lock git cache: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		r.mu.Unlock()
	}, nil
}

// Fetch brings every branch of the remote into the cache and returns it open.
// The repository is the caller's alone until it calls release (always
// non-nil); go-git's object storage is not safe for concurrent use.
func (r *Repo) Fetch(ctx context.Context) (repo *git.Repository, release func(), err error) {
	return r.FetchWith(ctx)
}

// FetchWith is Fetch that also fetches refs, as they are named on the
// remote (refs/pull/12/head), each to the same name in the cache: a pull
// request's head, which no branch of the base repository holds when it
// comes from a fork.
func (r *Repo) FetchWith(ctx context.Context, refs ...string) (repo *git.Repository, release func(), err error) {
	h, err := r.acquire()
	if err != nil {
		return nil, func() {}, err
	}
	if err := r.fetch(ctx, h, refs...); err != nil {
		r.release(h)
		return nil, func() {}, err
	}
	return h.repo, r.releaser(h), nil
}

// fetch updates the cache through h, under the cache's lock. h's index
// learns the new pack as go-git writes it, so h stays current without a
// reload; the pack set is read again under the same lock.
func (r *Repo) fetch(ctx context.Context, h *handle, refs ...string) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.refresh(h); err != nil {
		return err
	}
	specs := []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*"}
	for _, ref := range refs {
		specs = append(specs, gitconfig.RefSpec("+"+ref+":"+ref))
	}
	err = h.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   specs,
		Auth:       r.auth,
		Tags:       git.NoTags,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("fetch %s: %w", r.url, err)
	}
	h.packs, err = r.packs()
	return err
}

// IsAuthError says whether err is the remote refusing our credentials.
func IsAuthError(err error) bool {
	return errors.Is(err, transport.ErrAuthenticationRequired) ||
		errors.Is(err, transport.ErrAuthorizationFailed)
}

// Head returns the branch head as last fetched.
func Head(repo *git.Repository, branch string) (string, error) {
	ref, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", branch), true)
	if err != nil {
		return "", fmt.Errorf("branch %s not found on the remote: check repo.branch: %w", branch, err)
	}
	return ref.Hash().String(), nil
}

// Resolve turns a full or abbreviated SHA into a full one.
func Resolve(repo *git.Repository, rev string) (string, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrCommitNotFound, rev)
	}
	if _, err := repo.CommitObject(*h); err != nil {
		return "", fmt.Errorf("%w: %s", ErrCommitNotFound, rev)
	}
	return h.String(), nil
}

// OnBranch says whether commit sha is on the remote branch's first-parent
// chain (as fetched last): the branch's head, or a commit the branch was
// at. A commit only reachable through a merge's second parent (one of a
// pull request's own commits) was never the branch's state, so it is not
// on the branch. It also returns the head.
func OnBranch(repo *git.Repository, branch, sha string) (bool, string, error) {
	head, err := Head(repo, branch)
	if err != nil {
		return false, "", err
	}
	_, found, err := FirstParentsSince(repo, head, sha, 1)
	if err != nil {
		return false, head, fmt.Errorf("walk branch %s from %s: %w", branch, head, err)
	}
	return found, head, nil
}

// NotOnBranchError says that a commit is not on the tracked branch, and
// what to do about it; `changeops start` and the run's activities both
// refuse such a commit with it.
type NotOnBranchError struct {
	SHA, Branch, URL, Head string
}

func (e *NotOnBranchError) Error() string {
	return fmt.Sprintf("commit %s is not on branch %s of %s (head %s): changeops deploys only merged commits; merge it into %s first",
		contract.ShortSHA(e.SHA), e.Branch, e.URL, contract.ShortSHA(e.Head), e.Branch)
}

// CommitInfo is the part of a commit people read. Its strings come from
// whoever wrote the commit, so each is cut to a bound (MaxSubject,
// MaxIdentity) before it can reach a payload, a search attribute or a
// message: one commit must not be able to stop a branch.
type CommitInfo struct {
	SHA, Parent, Subject          string
	AuthorName, AuthorEmail       string
	CommitterName, CommitterEmail string
	Commit                        *object.Commit
}

// Bounds of a commit's strings as runs record them, in bytes.
const (
	MaxSubject  = 1024
	MaxIdentity = 256
)

// Lookup reads a commit.
func Lookup(repo *git.Repository, sha string) (*CommitInfo, error) {
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrCommitNotFound, sha)
	}
	info := &CommitInfo{
		SHA:            c.Hash.String(),
		Subject:        Truncate(subject(c.Message), MaxSubject),
		AuthorName:     Truncate(c.Author.Name, MaxIdentity),
		AuthorEmail:    Truncate(c.Author.Email, MaxIdentity),
		CommitterName:  Truncate(c.Committer.Name, MaxIdentity),
		CommitterEmail: Truncate(c.Committer.Email, MaxIdentity),
		Commit:         c,
	}
	if c.NumParents() > 0 {
		info.Parent = c.ParentHashes[0].String()
	}
	return info, nil
}

func subject(msg string) string {
	for i, ch := range msg {
		if ch == '\n' {
			return msg[:i]
		}
	}
	return msg
}

// ChangedPaths lists the paths a commit changed against its first parent
// (both sides of a rename), sorted. A root commit changes every path.
func ChangedPaths(c *object.Commit) ([]string, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of %s: %w", c.Hash, err)
	}
	var parentTree *object.Tree
	if c.NumParents() > 0 {
		parent, err := c.Parent(0)
		if err != nil {
			return nil, fmt.Errorf("read parent of %s: %w", c.Hash, err)
		}
		if parentTree, err = parent.Tree(); err != nil {
			return nil, fmt.Errorf("read tree of %s: %w", parent.Hash, err)
		}
	}
	changes, err := object.DiffTree(parentTree, tree)
	if err != nil {
		return nil, fmt.Errorf("diff %s against its parent: %w", c.Hash, err)
	}
	seen := map[string]bool{}
	for _, ch := range changes {
		seen[ch.From.Name] = true
		seen[ch.To.Name] = true
	}
	delete(seen, "")
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, nil
}

// FirstParentsSince walks the first-parent chain from head back to stop and
// returns the commits after stop, oldest first, at most limit of them (the
// oldest ones, so a long backlog is worked through in order). found is false
// when stop is not on the chain: history was rewritten.
func FirstParentsSince(repo *git.Repository, head, stop string, limit int) (commits []string, found bool, err error) {
	h := plumbing.NewHash(head)
	var chain []string
	for {
		if h.String() == stop {
			found = true
			break
		}
		c, err := repo.CommitObject(h)
		if err != nil {
			return nil, false, fmt.Errorf("walk first parents from %s: %w", head, err)
		}
		chain = append(chain, h.String())
		if c.NumParents() == 0 {
			break
		}
		h = c.ParentHashes[0]
	}
	if !found {
		return nil, false, nil
	}
	// chain is newest first; take the oldest `limit`.
	n := len(chain)
	if limit > 0 && n > limit {
		chain = chain[n-limit:]
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, true, nil
}

// EnsureCommit returns the cache holding sha, fetching only when the cache
// does not have it yet: plans and applies of a known commit cost no network.
// The caller calls release (always non-nil) when done with the repository.
func (r *Repo) EnsureCommit(ctx context.Context, sha string) (repo *git.Repository, release func(), err error) {
	h, err := r.acquire()
	if err != nil {
		return nil, func() {}, err
	}
	if _, err := Resolve(h.repo, sha); err != nil {
		if err := r.fetch(ctx, h); err != nil {
			r.release(h)
			return nil, func() {}, err
		}
		if _, err := Resolve(h.repo, sha); err != nil {
			r.release(h)
			return nil, func() {}, err
		}
	}
	return h.repo, r.releaser(h), nil
}

// Push sends commit to branch with an explicit refspec, under the cache's
// lock so that no fetch interleaves, and moves the remote-tracking branch as
// git does after a push. A push the remote refuses because the branch moved
// returns its error; the caller refetches and rebuilds.
func (r *Repo) Push(ctx context.Context, commit plumbing.Hash, branch string) error {
	h, err := r.acquire()
	if err != nil {
		return err
	}
	defer r.release(h)
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.refresh(h); err != nil {
		return err
	}
	g := h.repo
	local := plumbing.ReferenceName("refs/changeops/push")
	if err := g.Storer.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
		return fmt.Errorf("push %s: %w", commit, err)
	}
	spec := gitconfig.RefSpec(fmt.Sprintf("%s:refs/heads/%s", local, branch))
	if err := g.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{spec}, Auth: r.auth}); err != nil {
		return err
	}
	return g.Storer.SetReference(plumbing.NewHashReference(plumbing.NewRemoteReferenceName("origin", branch), commit))
}

// Truncate cuts s to at most n bytes on a UTF-8 boundary, marking the cut
// with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
