package gitrepo

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5"
)

// An opened repository is handed to the next user instead of reopened:
// reopening is what reloaded every pack index on each fetch.
func TestFetchReusesTheOpenedRepository(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("a", "1")
	f.commit("one")
	first, release, err := f.repo.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	release() // a second call is a no-op, not a second handle in the pool
	if n := len(f.repo.pool.idle); n != 1 {
		t.Fatalf("%d repositories kept after releasing one twice, want 1", n)
	}
	f.write("a", "2")
	two := f.commit("two")
	second, release, err := f.repo.Fetch(context.Background())
	defer release()
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("the second fetch opened the cache again")
	}
	// The reused repository's index learnt the pack the fetch wrote.
	if _, err := Resolve(second, two); err != nil {
		t.Errorf("resolve the fetched commit: %v", err)
	}
}

// Another process fetching into the same cache (a `changeops start`, a
// second worker on the machine) or git gc repacking it changes the packs
// under a kept repository; it must see them without a fetch of its own.
func TestKeptRepositorySeesPacksWrittenElsewhere(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("a", "1")
	one := f.commit("one")
	_, release, err := f.repo.Fetch(context.Background())
	release()
	if err != nil {
		t.Fatal(err)
	}

	f.write("b", "1")
	two := f.commit("two")
	other := New(Options{URL: f.Bare, Dir: f.repo.dir}) // another process
	_, release, err = other.Fetch(context.Background())
	release()
	if err != nil {
		t.Fatal(err)
	}
	// With the remote gone, only the other process's pack can answer.
	if err := os.Rename(f.Bare, f.Bare+".gone"); err != nil {
		t.Fatal(err)
	}
	g, release, err := f.repo.EnsureCommit(context.Background(), two)
	if err != nil {
		t.Fatalf("ensure a commit another process fetched, remote unreachable: %v", err)
	}
	if paths := changed(t, g, two); !slices.Equal(paths, []string{"b"}) {
		t.Errorf("changed paths of two = %v, want [b]", paths)
	}
	release()

	// git gc replaces every pack with one.
	f.git(f.repo.dir, "gc", "-q", "--prune=now")
	g, release, err = f.repo.EnsureCommit(context.Background(), one)
	defer release()
	if err != nil {
		t.Fatalf("ensure a commit after git gc: %v", err)
	}
	if paths := changed(t, g, one); !slices.Equal(paths, []string{"a"}) {
		t.Errorf("changed paths of one after gc = %v, want [a]", paths)
	}
}

// Concurrent activities fetch and read the cache at once while commits
// land; each gets a repository of its own (the race detector watches), and
// every commit reads back as what it changed.
func TestConcurrentFetchesAndReads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.write("seed", "0")
	f.commit("seed")
	const commits, readers = 12, 6
	shas := make(chan string, commits)
	want := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sha := range shas {
				mu.Lock()
				path := want[sha]
				mu.Unlock()
				if err := readBack(f.repo, sha, path); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := 0; i < commits; i++ {
		path := fmt.Sprintf("dir%d/file%d", i%3, i)
		f.write(path, fmt.Sprint(i))
		sha := f.commit(fmt.Sprint("commit ", i))
		mu.Lock()
		want[sha] = path
		mu.Unlock()
		shas <- sha
	}
	close(shas)
	wg.Wait()
	if n := len(f.repo.pool.idle); n == 0 || n > maxIdle {
		t.Errorf("%d repositories kept, want 1..%d", n, maxIdle)
	}
}

// readBack does what the watcher does for a new commit, alternating with
// what a plan does (a commit the cache may already hold).
func readBack(r *Repo, sha, path string) error {
	ctx := context.Background()
	g, release, err := r.Fetch(ctx)
	if err != nil {
		release()
		return err
	}
	if _, err := Resolve(g, sha); err != nil {
		// sha was pushed before it was sent: whichever reader fetched
		// it, this repository must see it now.
		release()
		return fmt.Errorf("after a fetch: %w", err)
	}
	release()
	g, release, err = r.EnsureCommit(ctx, sha)
	defer release()
	if err != nil {
		return err
	}
	info, err := Lookup(g, sha)
	if err != nil {
		return err
	}
	paths, err := ChangedPaths(info.Commit)
	if err != nil {
		return err
	}
	if !slices.Equal(paths, []string{path}) {
		return fmt.Errorf("changed paths of %.7s = %v, want [%s]", sha, paths, path)
	}
	return nil
}

// changed lists what sha changed, failing the test when it cannot.
func changed(t *testing.T, g *git.Repository, sha string) []string {
	t.Helper()
	info, err := Lookup(g, sha)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ChangedPaths(info.Commit)
	if err != nil {
		t.Fatal(err)
	}
	return paths
}
