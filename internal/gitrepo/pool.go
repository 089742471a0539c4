package gitrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Opening a go-git repository is cheap, but its first object read decodes
// the index of every pack in the cache: on a repository of 10,000 commits
// that was most of an incremental fetch (BENCHMARKS.md, "git per change").
// So opened repositories are kept, one per concurrent user: go-git's object
// storage fills its index and caches without locks, so a repository is
// never shared between goroutines, only handed from one to the next.

const (
	// maxIdle bounds the opened repositories kept; more concurrent users
	// than this open their own and drop them afterwards.
	maxIdle = 4
	// objectCacheSize bounds each opened repository's cache of decoded
	// objects (go-git's default is 96 MiB, times maxIdle).
	objectCacheSize = 32 * cache.MiByte
)

// handle is one opened repository and the packs its index covers.
type handle struct {
	repo    *git.Repository
	storage *filesystem.Storage
	// packs names the pack files in the cache when the index was last
	// known to be current: a fetch by another handle, or another process
	// (a `changeops start`, a worker sharing the folder), adds one, and
	// git gc replaces them.
	packs string
}

type pool struct {
	mu   sync.Mutex
	idle []*handle
}

// acquire returns an opened repository, current with the packs on disk,
// for the caller's use alone until release.
func (r *Repo) acquire() (*handle, error) {
	r.pool.mu.Lock()
	var h *handle
	if n := len(r.pool.idle); n > 0 {
		h, r.pool.idle = r.pool.idle[n-1], r.pool.idle[:n-1]
	}
	r.pool.mu.Unlock()
	if h == nil {
		var err error
		if h, err = r.open(); err != nil {
			return nil, err
		}
	}
	if err := r.refresh(h); err != nil {
		return nil, err
	}
	return h, nil
}

// release hands h to the next user, or drops it when enough are kept.
func (r *Repo) release(h *handle) {
	r.pool.mu.Lock()
	defer r.pool.mu.Unlock()
	if len(r.pool.idle) < maxIdle {
		r.pool.idle = append(r.pool.idle, h)
	}
}

// releaser is release(h) for a caller, safe to call more than once: a
// handle put back twice would be handed to two users at once.
func (r *Repo) releaser(h *handle) func() {
	var once sync.Once
	return func() { once.Do(func() { r.release(h) }) }
}

// refresh makes h's index reload (lazily, on its next read) when the packs
// on disk are not the ones it covers.
func (r *Repo) refresh(h *handle) error {
	packs, err := r.packs()
	if err != nil {
		return err
	}
	if packs != h.packs {
		h.storage.Reindex()
		h.packs = packs
	}
	return nil
}

// packs names the cache's pack files, sorted.
func (r *Repo) packs() (string, error) {
	entries, err := os.ReadDir(filepath.Join(r.dir, "objects", "pack"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read git cache %s: %w", r.dir, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pack") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return strings.Join(names, ","), nil
}

// open opens the cache, creating it first if need be.
func (r *Repo) open() (*handle, error) {
	if err := r.ensure(); err != nil {
		return nil, err
	}
	st := filesystem.NewStorage(osfs.New(r.dir), cache.NewObjectLRU(objectCacheSize))
	repo, err := git.Open(st, nil)
	if err != nil {
		return nil, fmt.Errorf("open git cache %s: %w", r.dir, err)
	}
	// "-" matches no pack set: the first refresh records the real one.
	return &handle{repo: repo, storage: st, packs: "-"}, nil
}

// ensure creates the bare cache with the remote as origin, under the
// cache's lock (another process may be creating it too). A cache left
// without its remote by a crash mid-creation is completed.
func (r *Repo) ensure() error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	repo, err := git.PlainInit(r.dir, true)
	if errors.Is(err, git.ErrRepositoryAlreadyExists) {
		repo, err = git.PlainOpen(r.dir)
	}
	if err != nil {
		return fmt.Errorf("open git cache %s: %w", r.dir, err)
	}
	if _, err := repo.Remote("origin"); errors.Is(err, git.ErrRemoteNotFound) {
		_, err = repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{r.url}})
		if err != nil {
			return fmt.Errorf("init git cache %s: %w", r.dir, err)
		}
	}
	return nil
}
