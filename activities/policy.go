package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/policy"
)

// judge evaluates the policies against a stack's plan, inside the activity
// that has the checkout and the engine's steps, so that only the bounded
// result enters the run's history. The repository's policies are read from
// the tree this run deploys (workDir is the stack's folder in it), so a
// policy changed by the commit judges that commit. The input document is
// kept in the data folder for `changeops policy test --plan`.
//
// A policy that does not compile or fails to evaluate fails the run
// closed: the error is not retried and names the file and line.
func (a *Activities) judge(ctx context.Context, in StackInput, workDir string, steps []policy.Step) (*policy.Result, error) {
	root := workspaceRoot(workDir, in.Stack.Path)
	set, err := LoadPolicies(ctx, a.Config.Policy, root)
	if err != nil {
		return nil, policyError(in, err)
	}
	if set.Empty() {
		return nil, nil
	}
	doc, err := a.policyInput(ctx, in, steps)
	if err != nil {
		return nil, err
	}
	if err := a.keepInput(in, doc); err != nil {
		stackLog(ctx, in).Warn("keep the policy input", "error", err)
	}
	res, err := set.Evaluate(ctx, doc)
	if err != nil {
		return nil, policyError(in, err)
	}
	for i := range res.Require {
		if err := resolveApprovers(a.Config, &res.Require[i]); err != nil {
			return nil, policyError(in, err)
		}
	}
	stackLog(ctx, in).Info("policies evaluated", "digest", res.Digest[:12], "deny", len(res.Deny), "warn", len(res.Warn), "require", len(res.Require))
	return &res, nil
}

// LoadPolicies compiles the organisation's policies (p.Org) and the
// repository's (p.Path under root; none when root is empty).
func LoadPolicies(ctx context.Context, p config.Policy, root string) (*policy.Set, error) {
	var files []policy.File
	for _, o := range p.Org {
		info, err := os.Stat(o)
		if err != nil {
			return nil, fmt.Errorf("read policy.org %s: %w", o, err)
		}
		base := o
		if !info.IsDir() {
			base = filepath.Dir(o)
		}
		fs, err := policy.ReadDir(policy.OriginOrg, base, o)
		if err != nil {
			return nil, err
		}
		// An organisation's folder without a policy (a volume that was
		// not mounted) must not judge every plan by nothing.
		if len(fs) == 0 {
			return nil, fmt.Errorf("policy.org %s holds no .rego file: mount the organisation's policies there, or remove it from policy.org", o)
		}
		files = append(files, fs...)
	}
	if dir := p.RepoPolicies(); dir != "" && root != "" {
		fs, err := policy.ReadDir(policy.OriginRepo, root, filepath.Join(root, filepath.FromSlash(dir)))
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	return policy.Compile(ctx, files, policy.Limits{Timeout: p.Timeout.D()})
}

func policyError(in StackInput, err error) error {
	var broken *policy.BrokenError
	var eval *policy.EvalError
	if errors.As(err, &broken) || errors.As(err, &eval) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("policies of stack %s at %s: %s: fix the policy; a broken policy stops the run rather than allow it",
				in.Stack.Name, contract.ShortSHA(in.Commit), err.Error()),
			ErrPolicyInvalid, nil)
	}
	return fmt.Errorf("policies of stack %s at %s: %w", in.Stack.Name, contract.ShortSHA(in.Commit), err)
}

// resolveApprovers fills a requirement's approvers from the worker's
// groups and people, so that the run records who counts toward it: a
// group's members, or the people named, each by their people entry's name
// and the Slack user ID listed (a decision names one or the other); a
// Slack user group stands for its members (the Slack app checks them). A
// group or person the configuration does not know fails the run closed,
// as does a count no group could meet.
func resolveApprovers(cfg *config.Config, q *policy.Requirement) error {
	fail := func(format string, args ...any) error {
		return &policy.EvalError{Origin: q.Origin, Err: fmt.Errorf("rule "+q.Rule+" "+format, args...)}
	}
	members := q.People
	switch {
	case config.IsSlackGroup(q.Group):
		q.Approvers = []string{q.Group}
		return nil
	case q.Group != "":
		g, ok := cfg.GroupByName(q.Group)
		if !ok {
			return fail("requires group %q, which the configuration's groups do not define: add it to groups, or name a Slack user group (S…)", q.Group)
		}
		members = g.Members
	}
	var people []string
	for _, m := range members {
		if p, ok := cfg.PersonByName(m); ok {
			people = append(people, p.Name)
			q.Approvers = append(q.Approvers, p.Name)
			continue
		}
		if !config.IsSlackUser(m) {
			return fail("requires %q, who is neither a people entry nor a Slack user ID: add a people entry named %s", m, m)
		}
		name := m
		for _, p := range cfg.People {
			if slices.Contains(p.Slack, m) {
				name = p.Name
				q.Approvers = append(q.Approvers, p.Name)
			}
		}
		people = append(people, name)
		q.Approvers = append(q.Approvers, m)
	}
	slices.Sort(people)
	if n := len(slices.Compact(people)); q.Count > n {
		return fail("requires %d approvals from %s, which has %d people", q.Count, orElse(q.Group, "the people named"), n)
	}
	slices.Sort(q.Approvers)
	q.Approvers = slices.Compact(q.Approvers)
	return nil
}

func orElse(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// policyInput is the document policies read: the commit from git, the
// stack from the configuration, the steps from the engine.
func (a *Activities) policyInput(ctx context.Context, in StackInput, steps []policy.Step) (policy.Input, error) {
	cache, err := a.git(in.Stack.Repo)
	if err != nil {
		return policy.Input{}, err
	}
	repo, release, err := cache.EnsureCommit(ctx, in.Commit)
	defer release()
	if err != nil {
		return policy.Input{}, gitError(err, in.Commit, cache.URL())
	}
	info, err := gitrepo.Lookup(repo, in.Commit)
	if err != nil {
		return policy.Input{}, gitError(err, in.Commit, cache.URL())
	}
	paths, err := gitrepo.ChangedPaths(info.Commit)
	if err != nil {
		return policy.Input{}, err
	}
	if len(paths) > MaxChangedPaths {
		paths = paths[:MaxChangedPaths]
	}
	s := in.Stack
	if steps == nil {
		steps = []policy.Step{}
	}
	labels := s.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return policy.Input{
		Commit: policy.Commit{
			SHA: info.SHA, Subject: info.Subject,
			Author:       policy.Identity{Name: info.AuthorName, Email: info.AuthorEmail},
			Committer:    policy.Identity{Name: info.CommitterName, Email: info.CommitterEmail},
			ChangedPaths: paths,
			Trailers:     policy.Trailers(info.Commit.Message),
		},
		Stack: policy.Stack{Name: s.Name, Stack: s.Stack, Branch: a.Config.BranchOf(s), Labels: labels,
			Approval: s.Approval, Drift: in.Refresh},
		Steps: steps,
	}, nil
}

// keepInputsFor is how long kept input documents stay: as long as
// Temporal keeps a run by default (the namespace's retention).
const keepInputsFor = 30 * 24 * time.Hour

// keepInput writes the input document where `changeops policy test
// --plan` finds it: data_dir/policy-inputs/<run>/<stack>.json, written
// aside and renamed into place. Documents of runs older than
// keepInputsFor are removed, so the folder does not grow for ever.
func (a *Activities) keepInput(in StackInput, doc policy.Input) error {
	pruneInputs(filepath.Join(a.Config.DataDir, "policy-inputs"), time.Now().Add(-keepInputsFor))
	path := InputPath(a.Config.DataDir, in.RunID, in.Stack.Name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// pruneInputs removes the runs' folders under dir last written before
// cutoff; it is best effort (a folder another worker removes first is
// gone either way).
func pruneInputs(dir string, cutoff time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && e.IsDir() && info.ModTime().Before(cutoff) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// InputPath is where the policy input of a run's stack is kept.
func InputPath(dataDir, runID, stack string) string {
	return filepath.Join(dataDir, "policy-inputs", url.PathEscape(runID), url.PathEscape(stack)+".json")
}

// workspaceRoot is the root of the exported tree whose stack folder is
// workDir.
func workspaceRoot(workDir, stackPath string) string {
	if stackPath == "." || stackPath == "" {
		return workDir
	}
	return filepath.Clean(strings.TrimSuffix(filepath.Clean(workDir), filepath.FromSlash(stackPath)))
}
