package gitrevert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// Limits bound the work of one revert or subtraction. Past a limit the
// result is what git does past its own (renames), or a conflict a person
// resolves (sizes); never a long stall of the activity.
type Limits struct {
	// MaxMergeBytes: a line merge with a version larger than this is a
	// conflict ("too large to merge"), not a merge.
	MaxMergeBytes int64
	// RenameLimit is git's diff.renameLimit: when the added files times
	// the deleted files left after exact renames exceed its square, only
	// exact renames (same content) are detected, as git does.
	RenameLimit int
}

// DefaultLimits: 50 MiB is far beyond the largest generated files seen in
// infrastructure repositories (a 39,000-line document is about 2 MiB) and
// merges in well under a second; 1000 is git's diff.renameLimit default.
// (`git revert` uses merge.renameLimit, 7000 by default: on a commit with
// between 1000² and 7000² inexact candidates git may find renames that
// are added and deleted files here.)
var DefaultLimits = Limits{MaxMergeBytes: 50 << 20, RenameLimit: 1000}

// A line merge is git's own: `git merge-file`, xdiff's three-way merge
// over a Myers diff, the code `git revert` merges with, so a clean merge
// is byte for byte the file git writes, in near-linear time on real
// inputs. (A diff3 of our own over a Go diff library would align repeated
// lines differently from xdiff in places, which is a silently different
// file; the worker image ships git.)

var gitPath = sync.OnceValues(func() (string, error) {
	p, err := exec.LookPath("git")
	if err != nil {
		return "", fmt.Errorf("line merges run git merge-file: %w", err)
	}
	return filepath.Abs(p)
})

// mergeLines merges two texts line by line against their base: the merged
// text, or a reason it conflicts ("" when clean). An error is the
// machinery failing, or ctx ending (the merge is stopped at once).
func mergeLines(ctx context.Context, base, ours, theirs []byte, lim Limits) (merged []byte, conflict string, err error) {
	switch {
	case bytes.Equal(ours, base):
		return theirs, "", nil
	case bytes.Equal(theirs, base) || bytes.Equal(ours, theirs):
		return ours, "", nil
	}
	for _, data := range [][]byte{base, ours, theirs} {
		if isBinary(data) {
			return nil, "binary", nil
		}
		if lim.MaxMergeBytes > 0 && int64(len(data)) > lim.MaxMergeBytes {
			return nil, tooLarge(int64(len(data)), lim), nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	git, err := gitPath()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "changeops-merge-")
	if err != nil {
		return nil, "", fmt.Errorf("line merge: %w", err)
	}
	defer os.RemoveAll(dir)
	names := [3]string{"ours", "base", "theirs"}
	for i, data := range [][]byte{ours, base, theirs} {
		if err := os.WriteFile(filepath.Join(dir, names[i]), data, 0o600); err != nil {
			return nil, "", fmt.Errorf("line merge: %w", err)
		}
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, git, "merge-file", "-p", "-q", names[0], names[1], names[2])
	cmd.Dir = dir
	// Only what merge-file needs: no user or system configuration, no
	// repository around the temporary folder, a fixed locale.
	cmd.Env = []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_CEILING_DIRECTORIES=" + filepath.Dir(dir),
		"HOME=" + dir,
		"LC_ALL=C",
	}
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.Bytes(), "", nil
	case errors.As(err, &exit) && exit.ExitCode() > 0 && exit.ExitCode() < 128:
		return nil, "content", nil // the exit status counts the conflicts
	}
	return nil, "", fmt.Errorf("git merge-file: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
}

// isBinary is git's heuristic: a NUL byte in the first 8000 bytes.
func isBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0
}

func tooLarge(n int64, lim Limits) string {
	return fmt.Sprintf("%s, too large to merge (limit %s)", size(n), size(lim.MaxMergeBytes))
}

func size(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
