package activities

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

func inspectEnv(t *testing.T, remote *gittest.Remote, stacks ...config.Stack) (*testsuite.TestActivityEnvironment, *Activities) {
	t.Helper()
	cfg := &config.Config{Repo: config.Repo{URL: remote.Bare, Branch: "main"}, Stacks: stacks, DataDir: t.TempDir()}
	acts := New(cfg, OpenRepos(cfg), pulumiEnvForTests(), nil)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return env, acts
}

func TestInspect(t *testing.T) {
	t.Parallel()
	remote := gittest.New(t, "main")
	remote.Commit("stacks", map[string]string{"stacks/web/Pulumi.yaml": "name: web\n", "stacks/api/README.md": "x\n"})
	files := map[string]string{"stacks/web/index.html": "hi\n"}
	for i := range MaxChangedPaths + 20 {
		files[fmt.Sprintf("docs/page%03d.md", i)] = "page\n"
	}
	sha := remote.Commit("big change", files)
	env, acts := inspectEnv(t, remote, config.Stack{Name: "web", Path: "stacks/web"}, config.Stack{Name: "api", Path: "stacks/api"})

	v, err := env.ExecuteActivity(acts.Inspect, InspectInput{Branch: "main", Commit: sha[:10]})
	if err != nil {
		t.Fatal(err)
	}
	var res InspectResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Commit.SHA != sha || res.Commit.Subject != "big change" || res.Commit.AuthorEmail != "alice@example.com" {
		t.Errorf("commit = %+v", res.Commit)
	}
	if len(res.ChangedPaths) != MaxChangedPaths || res.ChangedCount != MaxChangedPaths+21 {
		t.Errorf("changed paths: %d carried, count %d; want %d carried of %d", len(res.ChangedPaths), res.ChangedCount, MaxChangedPaths, MaxChangedPaths+21)
	}
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "web" {
		t.Errorf("stacks = %+v, want web (the path list is capped, the mapping is not)", res.Stacks)
	}

	// A touched stack whose folder holds no Pulumi.yaml, and a commit that
	// does not exist, are input errors: not retried, and they say why.
	bad := remote.Commit("touch api", map[string]string{"stacks/api/README.md": "y\n"})
	for _, c := range []struct{ commit, typ, says string }{
		{bad, ErrStackInvalid, "stack api: stacks/api/Pulumi.yaml does not exist at commit " + bad[:7]},
		{strings.Repeat("ab", 20), ErrCommitNotFound, "not found on " + remote.Bare},
	} {
		_, err := env.ExecuteActivity(acts.Inspect, InspectInput{Branch: "main", Commit: c.commit})
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != c.typ || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), c.says) {
			t.Errorf("inspect %s: err = %v, want non-retryable %s saying %q", c.commit[:7], err, c.typ, c.says)
		}
	}
}

func TestSummarizeKeepsErrorLines(t *testing.T) {
	t.Parallel()
	out := "failed to run update: exit status 255\ncode: 255\nstdout: Previewing update (dev):\n  pulumi:pulumi:Stack site-dev  \n" +
		"stderr: error: Error creating resource: unknown resource type changeops:index:Nope\nerror: Error creating resource: unknown resource type changeops:index:Nope\n"
	got := summarize(out)
	// The CLI's banner and the stderr: echo of the same line are dropped.
	if got != "error: Error creating resource: unknown resource type changeops:index:Nope" {
		t.Errorf("summarize = %q", got)
	}
}

// Commits reads who wrote each commit of a batch, in the order asked, and
// fails on a commit it cannot find.
func TestCommits(t *testing.T) {
	t.Parallel()
	remote := gittest.New(t, "main")
	c1 := remote.Commit("Serve c1", map[string]string{"stacks/web/Pulumi.yaml": "name: web\n"})
	c2 := remote.Commit("Serve c2\n\nbody", map[string]string{"stacks/web/index.html": "c2\n"})
	env, acts := inspectEnv(t, remote)

	v, err := env.ExecuteActivity(acts.Commits, CommitsInput{Branch: "main", Commits: []string{c1, c2}})
	if err != nil {
		t.Fatal(err)
	}
	var got []Commit
	if err := v.Get(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SHA != c1 || got[1].SHA != c2 || got[1].Subject != "Serve c2" || got[1].AuthorEmail != "alice@example.com" {
		t.Errorf("commits = %+v", got)
	}
	if _, err := env.ExecuteActivity(acts.Commits, CommitsInput{Branch: "main", Commits: []string{c1, strings.Repeat("0", 40)}}); err == nil {
		t.Error("a commit that does not exist was read")
	}
}
