package activities

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// Effective subtracts a change reverted on the branch since, merged the
// GitHub way (a merged pull request reverted with the merge-revert
// message), and heartbeats while it merges, saying what it is doing.
func TestEffectiveHeartbeatsWhileSubtracting(t *testing.T) {
	t.Parallel()
	r := gittest.New(t, "main")
	r.Commit("base", map[string]string{"page.txt": "title\nbody\nfooter\n"})
	r.Git(r.Clone, "checkout", "-q", "-b", "feature")
	r.Commit("bad title", map[string]string{"page.txt": "BAD\nbody\nfooter\n"})
	r.Git(r.Clone, "checkout", "-q", "main")
	r.Git(r.Clone, "merge", "-q", "--no-ff", "-m", "Merge pull request #1 from a/feature", "feature")
	merge := r.Git(r.Clone, "rev-parse", "HEAD")
	b := r.Commit("new footer", map[string]string{"page.txt": "BAD\nbody\nnew footer\n"})
	r.Git(r.Clone, "revert", "--no-edit", "-m", "1", merge)
	r.Git(r.Clone, "push", "-q", "origin", "HEAD:main")

	cfg := &config.Config{
		Repo:    config.Repo{URL: r.Bare, Branch: "main", AuthorName: "changeops", AuthorEmail: "changeops@localhost"},
		DataDir: t.TempDir(),
	}
	acts := New(cfg, OpenRepos(cfg), pulumiEnvForTests(), nil)
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	var mu sync.Mutex
	var beats []Progress
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p Progress
		if details.Get(&p) == nil {
			mu.Lock()
			beats = append(beats, p)
			mu.Unlock()
		}
	})
	v, err := env.ExecuteActivity(acts.Effective, EffectiveInput{Branch: "main", Commit: b})
	if err != nil {
		t.Fatal(err)
	}
	var res EffectiveResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Undone, []string{merge}) || res.DependsOn != "" {
		t.Fatalf("effective = %+v; want the reverted merge undone", res)
	}
	mu.Lock()
	defer mu.Unlock()
	// The SDK throttles heartbeats, so only the first is sure to be sent.
	if len(beats) == 0 || !strings.HasPrefix(beats[0].Line, "effective tree of "+b[:7]) || !beats[0].InFlight {
		t.Errorf("heartbeats %+v; want one when the subtraction starts, saying so", beats)
	}
}
