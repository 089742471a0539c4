package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// A commit pushed to a remote served by git http-backend with basic auth is
// noticed by polling, planned, refused to its author (four eyes), approved
// by another approver through the CLI's client path, applied (the file is on
// disk and once in the Pulumi state), verified by a command check that reads
// the stack's outputs and by no_changes, and ends succeeded.
func TestChangeRunSucceedsOverSmartHTTP(t *testing.T) {
	const branch = "e2e-http"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	url := remote.ServeHTTP("deploy", "t0ken")

	cfg := testConfig(t, url, branch, config.Stack{
		Name: "site-http", Path: "stacks/site", Stack: "test",
		Approval: config.ApprovalManual, Approvers: []string{"alice", "bob"}, FourEyes: true,
		Verify: []config.Check{{Command: []string{"./check.sh"}}, {NoChanges: true}},
	})
	cfg.Secrets.GitUsername, cfg.Secrets.GitPassword = "deploy", "t0ken"
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	sha := remote.Commit("Serve v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
	if p := run.Status.Plans; len(p) != 1 || p[0].Create != 2 || p[0].Digest == "" {
		t.Fatalf("plan = %+v, want 2 creates (stack and file) and a digest", p)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the file exists before approval: the plan applied something")
	}

	ctx := context.Background()
	shortID, err := starter.Resolve(ctx, c, sha[:8])
	if err != nil || shortID != id {
		t.Fatalf("resolve %s = %q, %v; want %s", sha[:8], shortID, err, id)
	}
	// The author is refused at once, through the CLI itself.
	code, stdout, stderr := changeops(t, "approve", sha[:8], "--as", "alice", "--key", keyFile(t, "alice"))
	if code != 1 || !strings.Contains(stderr, "refused: alice is linked to the author of commit "+sha[:7]+" by email alice@example.com, and stack site-http requires four eyes") {
		t.Fatalf("changeops approve --as alice = %d, %q, %q; want a four-eyes refusal", code, stdout, stderr)
	}
	if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "ship it")); err != nil {
		t.Fatalf("approval by bob: %v", err)
	}

	run = waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v2" {
		t.Fatalf("deployed file = %q, %v; want v2", got, err)
	}
	if n := resourcesOfType(t, cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Fatalf("Pulumi state holds %d changeops:index:File resources, want exactly 1", n)
	}
	if run.Approver != "bob" {
		t.Errorf("approver = %q, want bob", run.Approver)
	}
	v := run.Status.Verifications
	if len(v) != 1 || !v[0].Passed || len(v[0].Results) != 2 || !strings.Contains(v[0].Results[0].Detail, "found "+out) {
		t.Errorf("verifications = %+v, want the command check to see the output path and no_changes to pass", v)
	}

	// The scripted contract: one JSON object with the documented keys.
	code, stdout, stderr = changeops(t, "status", sha[:8], "--json")
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil {
		t.Fatalf("changeops status --json = %d, %q, %q", code, stdout, stderr)
	}
	for key, want := range map[string]any{"id": id, "commit": sha, "state": "succeeded", "approver": "bob", "revert_commit": ""} {
		if st[key] != want {
			t.Errorf("status --json %s = %v, want %v", key, st[key], want)
		}
	}
	if stacks, _ := st["stacks"].([]any); len(stacks) != 1 || stacks[0] != "site-http" {
		t.Errorf("status --json stacks = %v, want [site]", st["stacks"])
	}

	// The run is searchable by the attributes the CLI lists with.
	waitFor(t, 10*time.Second, "list by stack and state", func() (bool, string) {
		runs, err := starter.List(ctx, c, starter.Filter{Stack: "site-http", State: contract.StateSucceeded})
		if err != nil {
			return false, err.Error()
		}
		for _, r := range runs {
			if r.ID == id && r.Commit == sha && r.Approver == "bob" {
				return true, ""
			}
		}
		b, _ := json.Marshal(runs)
		return false, string(b)
	})

	// Starting the same commit by hand finds the run instead of a second one.
	repo := gitrepo.New(gitrepo.Options{URL: url, Dir: filepath.Join(t.TempDir(), "cache.git"), Username: "deploy", Password: "t0ken"})
	s, err := starter.Start(ctx, c, cfg, repo, starter.Target{Commit: sha[:10]})
	if err != nil || !s.Existed || s.ID != id {
		t.Fatalf("start again = %+v, %v; want the existing run %s", s, err, id)
	}
	if runs, err := starter.List(ctx, c, starter.Filter{CommitPrefix: sha}); err != nil || len(runs) != 1 {
		t.Fatalf("runs for %s = %+v, %v; want exactly one", sha, runs, err)
	}
	// Secrets never reach the history (the audit log everyone can read).
	for _, h := range []string{id, contract.WatcherWorkflowID(branch)} {
		if leaked := historyContains(t, c, h, "t0ken", "e2e-passphrase"); leaked != "" {
			t.Errorf("history of %s contains the secret %q", h, leaked)
		}
	}
	recordHistory(t, c, id, "change_succeeded.json")
}

// A change whose verification keeps failing (after retries on durable
// timers) is rolled back: a revert commit with git's wording and the run's
// trailer lands on the real remote, the stack is put back to the last good
// commit (on disk and in Pulumi's state) and verified, the run ends
// rolled-back, and the revert's own run finds nothing to do. Every step is
// announced in the Slack channel.
func TestFailingVerificationRollsBack(t *testing.T) {
	const branch = "e2e-verify"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))

	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-verify", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{Command: []string{"sh", "-c",
			`test "$(cat "$PULUMI_OUTPUT_PATH")" != broken || { echo upstream unhealthy; exit 3; }`}}},
		VerifyTimeout: config.Duration(12 * time.Second),
	})
	slack := slackWorkspace(t, cfg)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	setContent := func(msg, content string) string {
		return remote.Commit(msg, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"})
	}

	good := setContent("Serve v2", "v2")
	if run := waitState(t, c, contract.ChangeWorkflowID(branch, good), 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRollbackFailed); run.State != contract.StateSucceeded {
		t.Fatalf("good change ended %s: %s", run.State, run.Error)
	}
	bad := setContent("Break the site", "broken")
	id := contract.ChangeWorkflowID(branch, bad)
	run := waitState(t, c, id, 3*time.Minute, contract.StateRolledBack, contract.StateRollbackFailed, contract.StateFailed, contract.StateSucceeded)
	if run.State != contract.StateRolledBack {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	for _, want := range []string{"verification of site-verify failed after", "command sh -c", "upstream unhealthy", "exit status 3"} {
		if !strings.Contains(run.Error, want) {
			t.Errorf("error %q does not say %q", run.Error, want)
		}
	}
	if rounds := countActivities(t, c, id, "Verify"); rounds < 3 {
		t.Errorf("verification ran %d rounds, want retries within verify_timeout and the restore's", rounds)
	}

	// Git: one revert commit on the remote, on top of the bad one.
	if run.RevertCommit == "" || remote.Git(remote.Bare, "rev-parse", branch) != run.RevertCommit {
		t.Fatalf("revert_commit %q is not the remote's head %s", run.RevertCommit, remote.Git(remote.Bare, "rev-parse", branch))
	}
	msg := remote.Git(remote.Bare, "log", "-1", "--format=%B", run.RevertCommit)
	for _, want := range []string{`Revert "Break the site"`, "This reverts commit " + bad + ".", "Changeops-Run: " + id} {
		if !strings.Contains(msg, want) {
			t.Errorf("revert message %q lacks %q", msg, want)
		}
	}
	if parent := remote.Git(remote.Bare, "rev-parse", run.RevertCommit+"^"); parent != bad {
		t.Errorf("revert's parent = %s, want the bad commit %s", parent, bad)
	}
	// The infrastructure: back at the last good commit, once.
	if got, err := os.ReadFile(out); err != nil || string(got) != "v2" {
		t.Errorf("deployed file = %q, %v; want the last good v2", got, err)
	}
	if n := resourcesOfType(t, cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("Pulumi state holds %d files, want 1", n)
	}
	if r := run.Status.Restored; len(r) != 1 || r[0].Commit != good || !r[0].OK {
		t.Errorf("restored = %+v, want site-verify at %s, verified", r, good)
	}
	// Both are searchable: the revert commit and the restored commit.
	waitFor(t, 10*time.Second, "the rollback's search attributes", func() (bool, string) {
		resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("ChangeRevertCommit = '%s' AND ChangeRestoredCommits = '%s'", run.RevertCommit, good),
		})
		if err != nil {
			return false, err.Error()
		}
		return len(resp.GetExecutions()) == 1 && resp.GetExecutions()[0].GetExecution().GetWorkflowId() == id, fmt.Sprint(resp.GetExecutions())
	})
	code, stdout, _ := changeops(t, "status", bad[:8], "--json")
	if code != 0 || !strings.Contains(stdout, `"revert_commit":"`+run.RevertCommit+`"`) || !strings.Contains(stdout, `"state":"rolled-back"`) {
		t.Errorf("status --json = %s", stdout)
	}
	// The revert's own run plans against what is deployed: nothing to do.
	waitState(t, c, contract.ChangeWorkflowID(branch, run.RevertCommit), time.Minute, contract.StateNoOp)
	recordHistory(t, c, contract.ChangeWorkflowID(branch, run.RevertCommit), "change_revert_nothing_to_do.json")

	// Slack: the run's parent message shows how it ended; its thread tells
	// the story in order, the restore's verification included.
	slack.waitThread(t, bad[:7], contract.StateRolledBack, "received", "plan ready", "approved by policy", "applying", "applied",
		"rolling back", "verified site-verify", "restored site-verify", "revert pushed", contract.StateRolledBack)
	recordHistory(t, c, id, "change_rolled_back.json")

	// A commit touching no stack is a no-op (made on top of the revert, as
	// a person would after pulling).
	remote.Git(remote.Clone, "pull", "-q", "--ff-only", "origin", branch)
	sha := remote.Commit("Document the repo", map[string]string{"README.md": "infra\n"})
	if run := waitState(t, c, contract.ChangeWorkflowID(branch, sha), time.Minute, contract.StateNoOp); len(run.Stacks) != 0 {
		t.Errorf("no-op run lists stacks %v", run.Stacks)
	}
	recordHistory(t, c, contract.WatcherWorkflowID(branch), "watcher_with_rollback.json")
}

// A program the engine rejects fails the run at once, with Pulumi's message,
// and is not retried.
func TestBrokenProgramFailsWithoutRetry(t *testing.T) {
	const branch = "e2e-broken"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))

	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-broken", Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
	})
	slack := slackWorkspace(t, cfg)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	sha := remote.Commit("Use a resource type that does not exist", map[string]string{"stacks/site/Pulumi.yaml": `name: site
runtime: yaml
resources:
  page:
    type: changeops:index:Nope
    properties:
      path: /tmp/x
`})
	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, 2*time.Minute, contract.StateFailed, contract.StateAwaitingApproval)
	if run.State != contract.StateFailed {
		t.Fatalf("run is %s, want failed before approval", run.State)
	}
	for _, want := range []string{"plan site-broken", "preview stack site-broken (test) at " + sha[:7], "changeops:index:Nope"} {
		if !strings.Contains(run.Error, want) {
			t.Errorf("error %q does not say %q", run.Error, want)
		}
	}
	if n := countActivities(t, c, id, "Preview"); n != 1 {
		t.Errorf("preview attempted %d times, want 1 (not retryable)", n)
	}
	// Slack hears why, in the run's thread; no one is asked to approve.
	th := slack.waitThread(t, sha[:7], contract.StateFailed, "received", contract.StateFailed)
	if !strings.Contains(th[1].Blocks, "changeops:index:Nope") {
		t.Errorf("the failure message does not say what failed: %s", th[1].Blocks)
	}
	// The engine's words reach people without the escape codes Pulumi
	// YAML colours its diagnostics with (type: \x1b[1;4mchangeops:index:Nope\x1b[0m).
	_, status, _ := changeops(t, "status", sha[:8])
	for _, want := range []string{`unable to find resource type "changeops:index:Nope"`, "on Pulumi.yaml line 5"} {
		if !strings.Contains(run.Error, want) {
			t.Errorf("error %q does not say %q (the engine's error and the file line it comes from)", run.Error, want)
		}
	}
	for place, text := range map[string]string{"the run's error": run.Error, "Slack": th[1].Blocks, "changeops status": status} {
		if !strings.Contains(text, "changeops:index:Nope") || strings.ContainsAny(text, "\x1b\x07") || strings.Contains(text, `\u001b`) || strings.Contains(text, "[1;4m") {
			t.Errorf("%s is not plain text: %q", place, text)
		}
	}
}

// Bad input to `changeops start`: a commit that does not exist, and a remote
// that refuses the credentials.
func TestStartRefusesBadInput(t *testing.T) {
	const branch = "e2e-start"
	remote := gittest.New(t, branch)
	remote.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "x"), "v1"))
	url := remote.ServeHTTP("deploy", "t0ken")
	cfg := testConfig(t, url, branch, config.Stack{Name: "site-start", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	c, err := client.Dial(client.Options{HostPort: temporalURL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	repo := gitrepo.New(gitrepo.Options{URL: url, Dir: filepath.Join(t.TempDir(), "cache.git"), Username: "deploy", Password: "t0ken"})
	_, err = starter.Start(ctx, c, cfg, repo, starter.Target{Commit: "deadbeef"})
	if err == nil || !strings.Contains(err.Error(), "commit deadbeef is not on "+url) {
		t.Errorf("start of a missing commit: err = %v", err)
	}
	repo = gitrepo.New(gitrepo.Options{URL: url, Dir: filepath.Join(t.TempDir(), "cache.git"), Username: "deploy", Password: "wrong"})
	_, err = starter.Start(ctx, c, cfg, repo, starter.Target{Commit: "deadbeef"})
	if err == nil || !gitrepo.IsAuthError(err) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("start with a refused password: err = %v, want an auth error that does not print the password", err)
	}
}

// waitWatching waits until the branch's watcher has taken its baseline, so
// that the next push is a new commit to it.
func waitWatching(t *testing.T, c client.Client, branch string) {
	t.Helper()
	waitFor(t, 30*time.Second, "watcher baseline of "+branch, func() (bool, string) {
		return countActivities(t, c, contract.WatcherWorkflowID(branch), "PollBranch") >= 1, "no completed poll yet"
	})
}

// countActivities counts the attempts of an activity type in a workflow's
// history. The server records one started event per activity, carrying the
// attempt that ended it, so retries show as attempts above one.
func countActivities(t *testing.T, c client.Client, id, activityType string) int {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	n := 0
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			return 0
		}
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled[e.GetEventId()] = e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			attrs := e.GetActivityTaskStartedEventAttributes()
			if scheduled[attrs.GetScheduledEventId()] == activityType {
				n += int(attrs.GetAttempt())
			}
		}
	}
	return n
}

// resourcesOfType counts resources of a type in a stack's Pulumi state, read
// with the pulumi CLI itself.
func resourcesOfType(t *testing.T, cfg *config.Config, path, stack, typ string) int {
	t.Helper()
	var dep struct {
		Deployment struct {
			Resources []struct {
				Type string `json:"type"`
			} `json:"resources"`
			PendingOperations []json.RawMessage `json:"pending_operations"`
		} `json:"deployment"`
	}
	pulumiJSON(t, cfg, &dep, "stack", "export", "--stack", stack)
	if len(dep.Deployment.PendingOperations) > 0 {
		t.Errorf("stack %s has pending operations after the run", stack)
	}
	n := 0
	for _, r := range dep.Deployment.Resources {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// updatesOf counts the ups the engine recorded on a stack (previews are
// not in its history), read with the pulumi CLI itself.
func updatesOf(t *testing.T, cfg *config.Config, stack string) int {
	t.Helper()
	var history []struct {
		Kind string `json:"kind"`
	}
	pulumiJSON(t, cfg, &history, "stack", "history", "--json", "--stack", stack)
	n := 0
	for _, h := range history {
		if h.Kind == "update" {
			n++
		}
	}
	return n
}

// pulumiJSON runs the pulumi CLI on the test's backend (of the site
// project) and decodes its JSON output into out.
func pulumiJSON(t *testing.T, cfg *config.Config, out any, args ...string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte("name: site\nruntime: yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(tools, "bin", "pulumi"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PULUMI_HOME="+cfg.Pulumi.Home, "PULUMI_BACKEND_URL="+cfg.Pulumi.BackendURL,
		"PULUMI_CONFIG_PASSPHRASE="+cfg.Secrets.PulumiPassphrase, "PULUMI_SKIP_UPDATE_CHECK=true")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("pulumi %s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode pulumi %s: %v", strings.Join(args, " "), err)
	}
}

// Between approval and apply the program came to resolve differently (it
// reads a file outside the repository, which changed): the apply refuses,
// nothing of the unapproved plan reaches the stack, the run plans again,
// and the second approval is the one applied.
func TestApplyRefusesAPlanThatChangedSinceApproval(t *testing.T) {
	const branch = "e2e-replan"
	remote := gittest.New(t, branch)
	dir := t.TempDir()
	out, external := filepath.Join(dir, "site.txt"), filepath.Join(dir, "external.txt")
	if err := os.WriteFile(external, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-replan", Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
	})
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	sha := remote.Commit("Serve what the external file says", map[string]string{
		"stacks/site/Pulumi.yaml": siteProgram(nil, fileResource("page", "${outFile}", "fn::readFile: "+external)),
	})
	id := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, 2*time.Minute, contract.StateAwaitingApproval)
	if err := os.WriteFile(external, []byte("second"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "first")); err != nil {
		t.Fatal(err)
	}
	// Asked again: the first approval covered a plan that no longer holds.
	waitFor(t, 2*time.Minute, "a second approval request", func() (bool, string) {
		r, err := starter.Status(ctx, c, id)
		if err != nil || r.Status == nil {
			return false, fmt.Sprint(err)
		}
		n := strings.Count(fmt.Sprint(r.Status.Steps), contract.StateAwaitingApproval)
		return r.State == contract.StateAwaitingApproval && n == 2, fmt.Sprintf("%s after %d approval requests", r.State, n)
	})
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the site file exists: the unapproved plan was applied")
	}
	if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "second")); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "second" {
		t.Errorf("site file = %q, %v; want what the second approval saw", got, err)
	}
}
