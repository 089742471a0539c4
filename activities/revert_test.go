package activities

import (
	"strings"
	"testing"

	"go.temporal.io/sdk/testsuite"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// revertFixture is a remote over smart HTTP whose main holds a good and a
// bad commit, and the Revert activity's environment for it.
func revertFixture(t *testing.T) (*gittest.Remote, *Activities, func(RevertInput) (RevertResult, error), string) {
	t.Helper()
	r := gittest.New(t, "main")
	r.Commit("add the site", map[string]string{"site/index.html": "v1\n"})
	bad := r.Commit("break the site", map[string]string{"site/index.html": "broken\n"})
	cfg := &config.Config{
		Repo:    config.Repo{URL: r.ServeHTTP("ci", "s3cret"), Branch: "main", AuthorName: "changeops", AuthorEmail: "changeops@localhost"},
		DataDir: t.TempDir(),
		Secrets: config.Secrets{GitUsername: "ci", GitPassword: "s3cret"},
	}
	acts := New(cfg, OpenRepos(cfg), pulumiEnvForTests(), nil)
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	run := func(in RevertInput) (RevertResult, error) {
		v, err := env.ExecuteActivity(acts.Revert, in)
		if err != nil {
			return RevertResult{}, err
		}
		var res RevertResult
		return res, v.Get(&res)
	}
	return r, acts, run, bad
}

func revertsOf(r *gittest.Remote, subject string) int {
	return strings.Count(r.Git(r.Bare, "log", "--format=%s", "main"), `Revert "`+subject+`"`)
}

// The activity retried after its push landed (the worker died before
// reporting it) finds the revert on the branch and pushes no second one.
func TestRevertActivityRetriedAfterPush(t *testing.T) {
	t.Parallel()
	r, _, run, bad := revertFixture(t)
	in := RevertInput{Branch: "main", Commit: bad, Subject: "break the site", RunID: "change/main/" + bad}
	first, err := run(in)
	if err != nil || first.Revert == "" || first.Reused {
		t.Fatalf("first attempt = %+v, %v", first, err)
	}
	again, err := run(in)
	if err != nil || !again.Reused || again.Revert != first.Revert {
		t.Fatalf("retry = %+v, %v; want the first revert reused", again, err)
	}
	if n := revertsOf(r, "break the site"); n != 1 {
		t.Errorf("%d reverts on the remote, want 1", n)
	}
	if got := r.Git(r.Bare, "log", "-1", "--format=%an <%ae>", "main"); got != "changeops <changeops@localhost>" {
		t.Errorf("revert author = %q, want the configured one", got)
	}
}

// Another commit lands between the activity's fetch and its push: the push
// is refused, the revert is rebuilt on the new head, one revert lands.
func TestRevertActivityLosesAPushRace(t *testing.T) {
	t.Parallel()
	r, acts, run, bad := revertFixture(t)
	acts.beforePush = func(attempt int) {
		if attempt == 1 {
			r.Commit("racing edit", map[string]string{"README.md": "raced\n"})
		}
	}
	res, err := run(RevertInput{Branch: "main", Commit: bad, Subject: "break the site", RunID: "change/main/" + bad})
	if err != nil || res.Revert == "" {
		t.Fatalf("revert = %+v, %v", res, err)
	}
	if head := r.Git(r.Bare, "rev-parse", "main"); head != res.Revert {
		t.Fatalf("remote head %s is not the revert %s", head, res.Revert)
	}
	if subj := r.Git(r.Bare, "log", "-1", "--format=%s", "main^"); subj != "racing edit" {
		t.Errorf("the revert's parent is %q, want the racing commit", subj)
	}
	if n := revertsOf(r, "break the site"); n != 1 {
		t.Errorf("%d reverts on the remote, want 1", n)
	}
	if got := r.Git(r.Bare, "show", "main:site/index.html"); got != "v1" {
		t.Errorf("site/index.html on main = %q, want v1", got)
	}
}
