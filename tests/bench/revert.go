package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/changeops/changeops/internal/gitrevert"
)

// revertLines sizes the revert figure's files (-revert-lines).
var revertLines string

// revertFigure times the revert of a one-line change in a file of lines
// lines with repeated structure (a generated JSON document, as CRDs, lock
// files and rendered manifests are), onto a head that changed another
// line of the file since, so that the file merges line by line: Inverse
// (go-git, git merge-file for the merge) against `git revert --no-commit`
// on the same repository, alternately. Both must give the same tree.
func revertFigure(ctx context.Context, dir string, lines, pairs int) (ours, cli []float64, err error) {
	work := filepath.Join(dir, fmt.Sprintf("revert-%d", lines))
	if err := git(dir, "init", "-q", "-b", "main", work); err != nil {
		return nil, nil, err
	}
	doc := jsonLike(lines)
	write := func(content []string) error {
		return os.WriteFile(filepath.Join(work, "generated.json"), []byte(strings.Join(content, "")), 0o644)
	}
	if err := write(doc); err != nil {
		return nil, nil, err
	}
	if err := commit(work, "add the document"); err != nil {
		return nil, nil, err
	}
	i, j := findLine(doc, lines/2), findLine(doc, lines-lines/50) // the middle, and near the end
	doc[i] = strings.Replace(doc[i], "true", "false", 1)
	if err := write(doc); err != nil {
		return nil, nil, err
	}
	if err := commit(work, "disable one item"); err != nil {
		return nil, nil, err
	}
	bad, err := gitOut(work, "rev-parse", "HEAD")
	if err != nil {
		return nil, nil, err
	}
	doc[j] = strings.Replace(doc[j], "true", "false", 1)
	if err := write(doc); err != nil {
		return nil, nil, err
	}
	if err := commit(work, "disable another"); err != nil {
		return nil, nil, err
	}
	head, err := gitOut(work, "rev-parse", "HEAD")
	if err != nil {
		return nil, nil, err
	}
	if err := git(work, "gc", "-q"); err != nil { // packed, as a fetched clone is
		return nil, nil, err
	}
	repo, err := gogit.PlainOpen(work)
	if err != nil {
		return nil, nil, err
	}
	for p := 0; p < pairs; p++ {
		t0 := time.Now()
		res, err := gitrevert.Inverse(ctx, repo, plumbing.NewHash(bad), plumbing.NewHash(head))
		took := time.Since(t0).Seconds()
		if err != nil {
			return nil, nil, err
		}
		if len(res.Conflicts) > 0 {
			return nil, nil, fmt.Errorf("revert conflicts: %v", res.Described())
		}
		ours = append(ours, took)

		t0 = time.Now()
		err = git(work, "revert", "--no-commit", bad)
		took = time.Since(t0).Seconds()
		if err != nil {
			return nil, nil, err
		}
		cli = append(cli, took)
		tree, err := gitOut(work, "write-tree")
		if err != nil {
			return nil, nil, err
		}
		if tree != res.Tree.String() {
			return nil, nil, fmt.Errorf("revert of %d lines: tree %s, git's %s", lines, res.Tree, tree)
		}
		if err := git(work, "reset", "-q", "--hard", "HEAD"); err != nil {
			return nil, nil, err
		}
	}
	return ours, cli, nil
}

// jsonLike is a generated JSON document of about n lines, each item
// the same six lines but for its id.
func jsonLike(n int) []string {
	doc := []string{"{\n", "  \"items\": [\n"}
	for id := 0; len(doc) < n-2; id++ {
		doc = append(doc, "    {\n",
			fmt.Sprintf("      \"id\": %d,\n", id),
			"      \"kind\": \"Resource\",\n",
			"      \"enabled\": true,\n",
			"      \"tags\": [\"generated\", \"managed\"]\n",
			"    },\n")
	}
	return append(doc, "  ]\n", "}\n")
}

// findLine is the first "enabled" line at or after i.
func findLine(doc []string, i int) int {
	for ; !strings.Contains(doc[i], "\"enabled\""); i++ {
	}
	return i
}

func commit(repo, msg string) error {
	if err := git(repo, "add", "-A"); err != nil {
		return err
	}
	return git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", msg)
}

// revertFigures runs the revert figure at each size of -revert-lines and
// prints a line for each; missed counts sizes over 2x git.
func revertFigures(ctx context.Context, dir string, pairs int) (missed int, err error) {
	for _, s := range strings.Split(revertLines, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 100 {
			return missed, fmt.Errorf("-revert-lines %q: want line counts of 100 or more", s)
		}
		ours, cli, err := revertFigure(ctx, dir, n, pairs)
		if err != nil {
			return missed, fmt.Errorf("revert figure, %d lines: %w", n, err)
		}
		ratio := median(ours) / median(cli)
		if ratio > 2 {
			missed++
		}
		fmt.Printf("%-34s %9.3fs %9.3fs %7.2f %8s\n", fmt.Sprintf("revert one line of %d lines", n), median(ours), median(cli), ratio, "≤ 2.00")
	}
	return missed, nil
}
