package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/gitrepo"
)

// gitPerChange times what a change run does with git for each new commit:
// an incremental fetch into the cached clone and the list of paths the
// commit changed, against the git CLI doing the same (`git fetch` into a
// cache of its own, `git diff --name-only`), alternately, on a synthetic
// repository of commits commits and files files.
func gitPerChange(ctx context.Context, dir string, commits, files, pairs int) (ours, cli []float64, err error) {
	remote := filepath.Join(dir, "big.git")
	start := time.Now()
	if err := synthesize(remote, commits, files); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: synthetic repository of %d commits and %d files in %s\n", commits, files, time.Since(start).Round(time.Millisecond))

	// Both caches start from a full fetch, as after a worker's first poll.
	cache := gitrepo.New(gitrepo.Options{URL: remote, Dir: filepath.Join(dir, "big-cache.git")})
	_, release, err := cache.Fetch(ctx)
	release()
	if err != nil {
		return nil, nil, err
	}
	cliCache := filepath.Join(dir, "big-cli.git")
	refspec := "+refs/heads/*:refs/remotes/origin/*"
	if err := git(dir, "init", "-q", "--bare", cliCache); err != nil {
		return nil, nil, err
	}
	if err := git(cliCache, "fetch", "-q", remote, refspec); err != nil {
		return nil, nil, err
	}
	work := filepath.Join(dir, "big-work")
	if err := git(dir, "clone", "-q", remote, work); err != nil {
		return nil, nil, err
	}

	for i := 0; i < pairs; i++ {
		// A new commit on the remote for each side, then each side's turn.
		for side := 0; side < 2; side++ {
			f := (i*7 + side) % files
			path := fmt.Sprintf("dir%02d/file%05d.txt", f%50, f)
			if err := os.WriteFile(filepath.Join(work, path), []byte(fmt.Sprintf("changed %d %d\n", i, side)), 0o644); err != nil {
				return nil, nil, err
			}
			if err := commitPush(work, fmt.Sprintf("Change %d/%d", i, side)); err != nil {
				return nil, nil, err
			}
			sha, err := gitOut(work, "rev-parse", "HEAD")
			if err != nil {
				return nil, nil, err
			}
			t0 := time.Now()
			var paths []string
			if side == 0 {
				paths, err = oursPerChange(ctx, cache, sha)
			} else {
				var out string
				if err = git(cliCache, "fetch", "-q", remote, refspec); err == nil {
					out, err = gitOut(cliCache, "diff", "--name-only", sha+"^", sha)
				}
				paths = strings.Fields(out)
			}
			took := time.Since(t0).Seconds()
			if err != nil {
				return nil, nil, err
			}
			if len(paths) != 1 || paths[0] != path {
				return nil, nil, fmt.Errorf("changed paths of %s = %v, want [%s]", sha[:7], paths, path)
			}
			if side == 0 {
				ours = append(ours, took)
			} else {
				cli = append(cli, took)
			}
		}
	}
	return ours, cli, nil
}

// oursPerChange is what Inspect and the watcher do for a new commit.
func oursPerChange(ctx context.Context, cache *gitrepo.Repo, sha string) ([]string, error) {
	repo, release, err := cache.Fetch(ctx)
	defer release()
	if err != nil {
		return nil, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, err
	}
	return gitrepo.ChangedPaths(c)
}

// synthesize writes a bare repository with git fast-import: a first
// commit of files files in 50 folders, then commits-1 commits that each
// change one file.
func synthesize(bare string, commits, files int) error {
	if err := git(filepath.Dir(bare), "init", "-q", "--bare", "-b", "main", bare); err != nil {
		return err
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = bare
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<20)
	data := func(s string) { fmt.Fprintf(w, "data %d\n%s\n", len(s), s) }
	for c := 1; c <= commits; c++ {
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\ncommitter bench <bench@example.com> %d +0000\n", c, 1700000000+c)
		data(fmt.Sprintf("Commit %d", c))
		if c > 1 {
			fmt.Fprintf(w, "from :%d\n", c-1)
		}
		if c == 1 {
			for f := 0; f < files; f++ {
				fmt.Fprintf(w, "M 100644 inline dir%02d/file%05d.txt\n", f%50, f)
				data(fmt.Sprintf("file %d\n", f))
			}
		} else {
			f := (c * 31) % files
			fmt.Fprintf(w, "M 100644 inline dir%02d/file%05d.txt\n", f%50, f)
			data(fmt.Sprintf("file %d, version %d\n", f, c))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := in.Close(); err != nil {
		return err
	}
	return cmd.Wait()
}
