package gitrevert

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/changeops/changeops/internal/testkit/gittest"
)

// A file past the size limit that both sides changed is a conflict that
// says why; under the limit the same revert merges.
func TestMergeSizeLimit(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	var lines []string
	for i := 0; i < 1000; i++ {
		lines = append(lines, fmt.Sprintf(`  "key%d": "value",`, i))
	}
	page := strings.Join(lines, "\n") + "\n"
	r.Commit("add", map[string]string{"big.json": page})
	bad := r.Commit("change the top", map[string]string{"big.json": strings.Replace(page, "key1\"", "KEY1\"", 1)})
	head := r.Commit("change the bottom", map[string]string{"big.json": strings.Replace(
		strings.Replace(page, "key1\"", "KEY1\"", 1), "key999", "KEY999", 1)})
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	res, err := inverse(t.Context(), repo, plumbing.NewHash(bad), plumbing.NewHash(head), Limits{MaxMergeBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Conflicts) != 1 || res.Conflicts[0] != "big.json" || !strings.Contains(res.Reasons["big.json"], "too large to merge (limit 1000 bytes)") {
		t.Fatalf("over the limit: %+v; want a conflict on big.json saying it is too large", res)
	}
	res, err = Inverse(t.Context(), repo, plumbing.NewHash(bad), plumbing.NewHash(head))
	if err != nil || len(res.Conflicts) != 0 || !res.Changed {
		t.Fatalf("under the default limit: %+v, %v; want a clean merge", res, err)
	}
}

// A revert merging many files stops soon after its context ends, with the
// context's error, and so does one long line merge.
func TestMergeCancellation(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	files, bad, later := map[string]string{}, map[string]string{}, map[string]string{}
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("f%03d.txt", i)
		files[name] = "top\nmiddle\nbottom\n"
		bad[name] = "TOP\nmiddle\nbottom\n"
		later[name] = "TOP\nmiddle\nBOTTOM\n"
	}
	r.Commit("add", files)
	c := r.Commit("change the tops", bad)
	head := r.Commit("change the bottoms", later)
	repo, err := git.PlainOpen(r.Clone)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	// 300 line merges, each a git process: far longer than 100 ms.
	res, err := Inverse(ctx, repo, plumbing.NewHash(c), plumbing.NewHash(head))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Inverse = %+v, %v; want it stopped by its deadline", res, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stopped after %v, want soon after 100ms", d)
	}

	// One merge of large texts both sides changed everywhere.
	var base, ours, theirs strings.Builder
	for i := 0; i < 600_000; i++ {
		fmt.Fprintf(&base, "line %d\n", i)
		fmt.Fprintf(&ours, "line %d%s\n", i, map[bool]string{true: " ours"}[i%2 == 0])
		fmt.Fprintf(&theirs, "line %d%s\n", i, map[bool]string{true: " theirs"}[i%3 == 0])
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(30*time.Millisecond, cancel)
	start = time.Now()
	_, why, err := mergeLines(ctx, []byte(base.String()), []byte(ours.String()), []byte(theirs.String()), DefaultLimits)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("mergeLines = %q, %v; want it cancelled", why, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a cancelled merge returned after %v", d)
	}
}

// Past the rename limit only exact renames are found, as git does.
func TestRenameLimit(t *testing.T) {
	t.Parallel()
	repo, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		t.Fatal(err)
	}
	blob := func(s string) entry {
		h, err := writeBlob(repo.Storer, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return entry{hash: h, mode: filemode.Regular}
	}
	text := func(i int) string {
		var b strings.Builder
		for j := 0; j < 40; j++ {
			fmt.Fprintf(&b, "file %d line %d\n", i, j)
		}
		return b.String()
	}
	before, after := map[string]entry{}, map[string]entry{}
	for i := 0; i < 3; i++ { // renamed and edited a little
		before[fmt.Sprintf("old%d.txt", i)] = blob(text(i))
		after[fmt.Sprintf("new%d.txt", i)] = blob(text(i) + "one more line\n")
	}
	before["same.txt"] = blob("exactly this\n") // renamed as it is
	after["moved.txt"] = blob("exactly this\n")
	all := map[string]string{"old0.txt": "new0.txt", "old1.txt": "new1.txt", "old2.txt": "new2.txt", "same.txt": "moved.txt"}
	for _, c := range []struct {
		limit int
		want  map[string]string
	}{
		{0, all},
		{3, all}, // 3 added × 3 deleted after the exact rename: within 3²
		{2, map[string]string{"same.txt": "moved.txt"}},
	} {
		got, err := detectRenames(t.Context(), repo.Storer, before, after, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, c.want) {
			t.Errorf("limit %d: renames %v, want %v", c.limit, got, c.want)
		}
	}
}
