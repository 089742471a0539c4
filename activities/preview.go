package activities

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/forge"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/gitrevert"
)

// ErrNoForge: the repository has no forge configured (repos[].forge).
const ErrNoForge = "NoForge"

// Why a pull request is not previewed (PullPlan.Skipped).
const (
	SkipClosed    = "closed"
	SkipFork      = "fork"
	SkipUntracked = "untracked branch"
	SkipConflict  = "conflict"
	SkipNoStacks  = "no stacks"
)

// PullInput names a pull request of a repository.
type PullInput struct {
	Repo   string
	Number int
}

// PullPlan is what merging a pull request would deploy, as its branch
// stands: its head merged into the branch's head (the tree a change run
// of the merge would plan), and the stacks that merge changes.
type PullPlan struct {
	Number int
	Title  string
	Author string
	URL    string
	Head   string // the pull request's head commit
	// HeadRef is the ref of the base repository holding Head
	// (refs/pull/N/head, GitLab's refs/merge-requests/N/head).
	HeadRef string `json:",omitempty"`
	Branch  string
	// BranchHead is the branch's head it was merged into, and Tree the
	// merged tree.
	BranchHead string
	Tree       string
	Stacks     []config.Stack
	// Skipped says why nothing is previewed (Skip*); Conflicts are the
	// paths of a merge that conflicts.
	Skipped   string `json:",omitempty"`
	Conflicts []string
}

// PullStackInput previews one stack of a PullPlan.
type PullStackInput struct {
	Repo       string
	Number     int
	Head       string
	HeadRef    string
	BranchHead string
	Tree       string
	Stack      config.Stack
	// TargetURL is where the status links (the preview in the Temporal UI).
	TargetURL string
}

// PullStackPlan is one stack's preview of a pull request. A program that
// fails is an outcome (Error), shown on the pull request, not an error of
// the activity.
type PullStackPlan struct {
	PlanResult
	Error string `json:",omitempty"`
}

// PullReport is the comment on a pull request with each stack's plan.
type PullReport struct {
	Repo   string
	Plan   PullPlan
	Stacks []PullStackPlan
}

// forgeOf is a repository's forge, for its pull requests.
func (a *Activities) forgeOf(repo string) (forge.Forge, error) {
	f, ok := a.Forges[repo]
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("repository %q has no forge configured: set repos[].forge (kind, url, token_env) for previews of its pull requests", repo),
			ErrNoForge, nil)
	}
	return f, nil
}

// PreparePull reads a pull request from the forge (the webhook that woke
// the preview is only a hint), merges its head into its branch's head and
// lists the stacks the merge changes, each marked pending on the forge.
func (a *Activities) PreparePull(ctx context.Context, in PullInput) (PullPlan, error) {
	f, err := a.forgeOf(in.Repo)
	if err != nil {
		return PullPlan{}, err
	}
	pr, err := f.PullRequest(ctx, in.Number)
	if err != nil {
		return PullPlan{}, err
	}
	// What the forge says goes into statuses, comments and the history:
	// a head that is not a commit ID is refused, and the base must be a
	// tracked branch (below) to go further.
	if !isCommitID(pr.Head) {
		return PullPlan{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the forge says pull request #%d's head is %.80q, which is not a commit ID", in.Number, pr.Head), ErrStackInvalid, nil)
	}
	pr.URL = forge.Bound(pr.URL, 500)
	plan := PullPlan{Number: in.Number, Title: pr.Title, Author: pr.Author, URL: pr.URL, Head: pr.Head, HeadRef: pr.HeadRef, Branch: forge.Bound(pr.Base, 255)}
	switch {
	case !pr.Open:
		plan.Skipped = SkipClosed
		return plan, nil
	case !slices.Contains(a.Config.Watches(), config.Watch{Repo: in.Repo, Branch: pr.Base}):
		plan.Skipped = SkipUntracked
		return plan, nil
	case pr.Fork && !a.Config.ForgeOf(in.Repo).ForkPreviews:
		plan.Skipped = SkipFork
		note := contract.PreviewMarker + "\n" + "changeops does not preview pull requests from forks of this repository: " +
			"their code would run on changeops' workers before anyone reviewed it. " +
			"The plan is shown in the change run after the merge; an operator can turn fork previews on with `forge.fork_previews`."
		return plan, f.UpsertComment(ctx, in.Number, contract.PreviewMarker, note)
	}
	cache, err := a.git(in.Repo)
	if err != nil {
		return plan, err
	}
	repo, release, err := cache.FetchWith(ctx, pr.HeadRef)
	defer release()
	if err != nil {
		return plan, gitError(err, pr.Head, cache.URL())
	}
	if plan.BranchHead, err = gitrepo.Head(repo, pr.Base); err != nil {
		return plan, err
	}
	merged, err := mergePull(ctx, repo, plan.BranchHead, pr.Head)
	if err != nil {
		return plan, err
	}
	if len(merged.Conflicts) > 0 {
		plan.Skipped, plan.Conflicts = SkipConflict, merged.Described()
		return plan, f.SetStatus(ctx, forge.Status{SHA: pr.Head, Context: "changeops", State: forge.StateFailure,
			Description: fmt.Sprintf("conflicts with %s at %s: %s", pr.Base, contract.ShortSHA(plan.BranchHead), strings.Join(plan.Conflicts, ", "))})
	}
	plan.Tree = merged.Tree.String()
	paths, err := changedBetween(repo, plan.BranchHead, merged.Tree)
	if err != nil {
		return plan, err
	}
	plan.Stacks = a.Config.StacksTouched(in.Repo, pr.Base, paths)
	if len(plan.Stacks) == 0 {
		plan.Skipped = SkipNoStacks
		return plan, nil
	}
	for _, s := range plan.Stacks {
		if err := f.SetStatus(ctx, forge.Status{SHA: pr.Head, Context: contract.StatusContext(s.Name), State: forge.StatePending,
			Description: fmt.Sprintf("previewing %s merged into %s at %s", contract.ShortSHA(pr.Head), pr.Base, contract.ShortSHA(plan.BranchHead))}); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// mergePull merges head into branchHead, refusing commits the cache does
// not hold.
func mergePull(ctx context.Context, repo *git.Repository, branchHead, head string) (gitrevert.Result, error) {
	if _, err := repo.CommitObject(plumbing.NewHash(head)); err != nil {
		return gitrevert.Result{}, fmt.Errorf("pull request head %s is not in the fetched refs: %w", contract.ShortSHA(head), err)
	}
	res, err := gitrevert.Merge(ctx, repo, plumbing.NewHash(branchHead), plumbing.NewHash(head))
	if err != nil {
		return res, fmt.Errorf("merge %s into %s: %w", contract.ShortSHA(head), contract.ShortSHA(branchHead), err)
	}
	return res, nil
}

// changedBetween lists the paths that differ between a commit's tree and
// another tree.
func changedBetween(repo *git.Repository, commit string, tree plumbing.Hash) ([]string, error) {
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", contract.ShortSHA(commit), err)
	}
	from, err := c.Tree()
	if err != nil {
		return nil, err
	}
	to, err := repo.TreeObject(tree)
	if err != nil {
		return nil, fmt.Errorf("read merged tree %s: %w", tree, err)
	}
	changes, err := object.DiffTree(from, to)
	if err != nil {
		return nil, fmt.Errorf("diff %s with the merged tree: %w", contract.ShortSHA(commit), err)
	}
	var paths []string
	for _, ch := range changes {
		for _, p := range []string{ch.From.Name, ch.To.Name} {
			if p != "" && !slices.Contains(paths, p) {
				paths = append(paths, p)
			}
		}
	}
	return paths, nil
}

// PreviewPull previews one stack at a pull request's merged tree. It takes
// no lock of changeops' own, and the engine's preview takes none on a DIY
// backend (pkg/backend/diy locks for update, refresh and destroy only); it
// writes no state: it only selects the stack, and a stack that does not
// exist yet is reported, not created. Its program runs with PreviewVars: the engine's settings and
// the stack's preview_env, none of the credentials its deployments get.
func (a *Activities) PreviewPull(ctx context.Context, in PullStackInput) (PullStackPlan, error) {
	f, err := a.forgeOf(in.Repo)
	if err != nil {
		return PullStackPlan{}, err
	}
	out, err := a.previewPull(ctx, in)
	if err != nil {
		return out, err
	}
	st := forge.Status{SHA: in.Head, Context: contract.StatusContext(in.Stack.Name), TargetURL: in.TargetURL}
	if out.Error != "" {
		st.State, st.Description = forge.StateFailure, out.Error
	} else {
		st.State, st.Description = forge.StateSuccess, PlanSummary(out.PlanResult)
	}
	return out, f.SetStatus(ctx, st)
}

func (a *Activities) previewPull(ctx context.Context, in PullStackInput) (PullStackPlan, error) {
	s := in.Stack
	out := PullStackPlan{PlanResult: PlanResult{Stack: s.Name}}
	cache, err := a.git(in.Repo)
	if err != nil {
		return out, err
	}
	ws := filepath.Join(a.Config.DataDir, "workspaces", in.Repo, "pull-"+in.Tree)
	if !gitrepo.Exported(ws) {
		// Another worker may have merged: the merge is computed again
		// from the commits, and must give the same tree.
		repo, release, err := cache.FetchWith(ctx, in.HeadRef)
		defer release()
		if err != nil {
			return out, gitError(err, in.Head, cache.URL())
		}
		merged, err := mergePull(ctx, repo, in.BranchHead, in.Head)
		if err != nil {
			return out, err
		}
		if merged.Tree.String() != in.Tree {
			return out, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("merging %s into %s gives tree %s, not the %s prepared", contract.ShortSHA(in.Head), contract.ShortSHA(in.BranchHead), merged.Tree, in.Tree),
				ErrStackInvalid, nil)
		}
		if err := gitrepo.ExportTree(repo, merged.Tree, "pull request #"+fmt.Sprint(in.Number), ws); err != nil {
			return out, fmt.Errorf("export the merge of #%d: %w", in.Number, err)
		}
	}
	dir := filepath.Join(ws, filepath.FromSlash(s.Path))
	if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err != nil {
		out.Error = fmt.Sprintf("stack %s: %s/Pulumi.yaml does not exist in the merge of #%d", s.Name, s.Path, in.Number)
		return out, nil
	}
	cmd, err := a.command()
	if err != nil {
		return out, err
	}
	stack, err := auto.SelectStackLocalSource(ctx, s.Stack, dir,
		auto.Pulumi(cmd), auto.PulumiHome(a.Pulumi.Home), auto.EnvVars(a.Pulumi.PreviewVars(s.PreviewEnv)))
	if err != nil {
		if auto.IsSelectStack404Error(err) {
			out.Error = fmt.Sprintf("stack %s (%s) does not exist yet: a preview never creates one; the first deployed run does", s.Name, s.Stack)
			return out, nil
		}
		return out, pulumiError("select", s, in.Head, err)
	}
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "preview "+s.Name+" for #"+fmt.Sprint(in.Number))
	defer progress.Stop()
	plan, err := previewWith(ctx, stack, StackInput{Stack: s, Commit: in.Head}, progress, recordSteps())
	if err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.NonRetryable() {
			out.Error = ae.Message()
			return out, nil
		}
		return out, err
	}
	plan.PulumiVersion = a.cliVersion()
	out.PlanResult = plan
	return out, nil
}

// PlanSummary is a plan in a few characters: "+2 ~1 -0", with replacements
// when there are any.
func PlanSummary(p PlanResult) string {
	s := fmt.Sprintf("+%d ~%d -%d", p.Create, p.Update, p.Delete)
	if p.Replace > 0 {
		s += fmt.Sprintf(" ±%d", p.Replace)
	}
	return s
}

// ReportPull keeps changeops' one comment on the pull request: each
// stack's summary and diff, cut to what the forge accepts.
func (a *Activities) ReportPull(ctx context.Context, in PullReport) error {
	f, err := a.forgeOf(in.Repo)
	if err != nil {
		return err
	}
	return f.UpsertComment(ctx, in.Plan.Number, contract.PreviewMarker, RenderPullComment(in, f.MaxComment()))
}

// RenderPullComment is the comment's Markdown, at most limit bytes: diffs
// share what the summary leaves, and a cut one says so.
func RenderPullComment(in PullReport, limit int) string {
	p := in.Plan
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n### changeops preview of %s\n\n", contract.PreviewMarker, planRecord(in), contract.ShortSHA(p.Head))
	fmt.Fprintf(&b, "Merged into `%s` at %s: the tree a change run of the merge would plan, if `%s` does not move.\n\n",
		p.Branch, contract.ShortSHA(p.BranchHead), p.Branch)
	switch p.Skipped {
	case SkipNoStacks:
		b.WriteString("This pull request changes no configured stack.\n")
		return b.String()
	}
	b.WriteString("| stack | plan |\n|---|---|\n")
	for _, s := range in.Stacks {
		res := PlanSummary(s.PlanResult)
		if s.Error != "" {
			res = "failed: " + forge.Bound(oneLine(s.Error), 300)
		}
		fmt.Fprintf(&b, "| %s | %s |\n", s.Stack, strings.ReplaceAll(res, "|", "\\|"))
	}
	const cutNote = "\n… (cut: the forge accepts %d bytes per comment; the whole plan is in the preview's history)\n"
	room := limit - b.Len() - 200*len(in.Stacks)
	for i, s := range in.Stacks {
		if s.Error != "" || s.Diff == "" {
			continue
		}
		share := room / (len(in.Stacks) - i)
		diff := strings.ReplaceAll(s.Diff, "```", "`\u200b``")
		cut := s.DiffTruncated
		if len(diff) > share {
			diff, cut = forge.Bound(diff, max(share, 0)), true
		}
		room -= len(diff)
		fmt.Fprintf(&b, "\n<details><summary>%s: %s</summary>\n\n```\n%s\n```\n", s.Stack, PlanSummary(s.PlanResult), diff)
		if cut {
			fmt.Fprintf(&b, cutNote, limit)
		}
		b.WriteString("</details>\n")
	}
	return forge.Bound(b.String(), limit)
}

// recordPrefix starts the comment's record of what was previewed, read by
// the change run of the merge (ComparePreview):
//
//	<!-- changeops:plan head=H base=B tree=T stack=NAME:STEPS:C,U,R,D ... -->
const recordPrefix = "<!-- changeops:plan "

func planRecord(in PullReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%shead=%s base=%s tree=%s", recordPrefix, in.Plan.Head, in.Plan.BranchHead, in.Plan.Tree)
	for _, s := range in.Stacks {
		steps := s.Steps
		if s.Error != "" {
			steps = "failed"
		}
		fmt.Fprintf(&b, " stack=%s:%s:%d,%d,%d,%d", url.QueryEscape(s.Stack), steps, s.Create, s.Update, s.Replace, s.Delete)
	}
	b.WriteString(" -->")
	return b.String()
}

// previewRecord is a planRecord read back.
type previewRecord struct {
	head, base, tree string
	stacks           map[string]PlanResult
}

func parseRecord(body string) (previewRecord, bool) {
	i := strings.Index(body, recordPrefix)
	if i < 0 {
		return previewRecord{}, false
	}
	line, _, ok := strings.Cut(body[i+len(recordPrefix):], " -->")
	if !ok {
		return previewRecord{}, false
	}
	rec := previewRecord{stacks: map[string]PlanResult{}}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "head":
			rec.head = v
		case "base":
			rec.base = v
		case "tree":
			rec.tree = v
		case "stack":
			parts := strings.Split(v, ":")
			if len(parts) != 3 {
				return previewRecord{}, false
			}
			name, err := url.QueryUnescape(parts[0])
			if err != nil {
				return previewRecord{}, false
			}
			p := PlanResult{Stack: name, Steps: parts[1]}
			if _, err := fmt.Sscanf(parts[2], "%d,%d,%d,%d", &p.Create, &p.Update, &p.Replace, &p.Delete); err != nil {
				return previewRecord{}, false
			}
			rec.stacks[name] = p
		}
	}
	return rec, rec.head != ""
}

// ComparePreviewInput asks whether a change run's plans are what the
// pull request it merged was previewed with.
type ComparePreviewInput struct {
	Repo   string
	Commit string
	Plans  []PlanResult
}

// PreviewComparison is the answer: Same when every stack plans the steps
// its preview showed on the pull request (the run says "as previewed on
// #N"); else Differences say what differs.
type PreviewComparison struct {
	Number      int `json:",omitempty"` // 0: the commit came from no pull request
	Previewed   bool
	Head        string `json:",omitempty"` // the pull request head the preview showed
	Same        bool
	Differences []string `json:",omitempty"`
}

// ComparePreview finds the pull request the commit merged (the forge says)
// and compares the run's plans with the record in changeops' own comment on
// it: what reviewers saw. The comment, not the preview workflow, is the
// record, since only changeops' forge token writes it, and anyone who
// reaches Temporal could start a preview workflow with made-up input.
func (a *Activities) ComparePreview(ctx context.Context, in ComparePreviewInput) (PreviewComparison, error) {
	f, err := a.forgeOf(in.Repo)
	if err != nil {
		return PreviewComparison{}, err
	}
	number, found, err := f.PullOfCommit(ctx, in.Commit)
	if err != nil || !found {
		return PreviewComparison{}, err
	}
	out := PreviewComparison{Number: number}
	body, found, err := f.Comment(ctx, number, contract.PreviewMarker)
	if err != nil {
		return out, err
	}
	rec, ok := parseRecord(body)
	if !found || !ok {
		out.Differences = []string{fmt.Sprintf("#%d has no preview", number)}
		return out, nil
	}
	out.Previewed, out.Head = true, rec.head
	for _, p := range in.Plans {
		was, ok := rec.stacks[p.Stack]
		switch {
		case !ok:
			out.Differences = append(out.Differences, fmt.Sprintf("%s was not previewed on #%d", p.Stack, number))
		case was.Steps == "failed":
			out.Differences = append(out.Differences, fmt.Sprintf("%s: its preview on #%d failed", p.Stack, number))
		case was.Steps != p.Steps:
			out.Differences = append(out.Differences, fmt.Sprintf("%s: previewed %s on #%d (of %s into %s), plans %s now",
				p.Stack, PlanSummary(was), number, contract.ShortSHA(rec.head), contract.ShortSHA(rec.base), PlanSummary(p)))
		}
	}
	out.Same = len(out.Differences) == 0
	return out, nil
}

// Described says it for people: "as previewed on #12", or what differs.
func (c PreviewComparison) Described() string {
	switch {
	case c.Number == 0:
		return ""
	case c.Same:
		return fmt.Sprintf("as previewed on #%d", c.Number)
	}
	return fmt.Sprintf("differs from the preview on #%d: %s", c.Number, strings.Join(c.Differences, "; "))
}

// isCommitID says whether s is a full SHA-1 or SHA-256 commit ID.
func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
