package tests

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/worker"
	"github.com/changeops/changeops/workflows"
)

// triggerSetup is a remote with a stack folder, and a worker watching it;
// commits that touch only README.md are cheap no-op runs.
func triggerSetup(t *testing.T, branch string, poll time.Duration) (*gittest.Remote, *config.Config, *worker.Worker) {
	t.Helper()
	remote := gittest.New(t, branch)
	remote.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "x"), "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{Name: "site-" + strings.TrimPrefix(branch, "e2e-"), Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	cfg.Repo.PollInterval = config.Duration(poll)
	cfg.Secrets.GitHubSecret = "gh-secret"
	w := startWorkerFull(t, cfg)
	waitWatching(t, w.Client(), branch)
	return remote, cfg, w
}

// 50 commits pushed at once become 50 runs, started in merge order.
func TestBurstOfCommitsRunsInOrder(t *testing.T) {
	const branch = "e2e-burst"
	remote, _, w := triggerSetup(t, branch, time.Second)
	c := w.Client()
	var shas []string
	for i := range 50 {
		remote.Write(map[string]string{"README.md": fmt.Sprintf("revision %d\n", i)})
		remote.Git(remote.Clone, "add", "-A")
		remote.Git(remote.Clone, "commit", "-q", "-m", fmt.Sprintf("Revision %d", i))
		shas = append(shas, remote.Git(remote.Clone, "rev-parse", "HEAD"))
	}
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:"+branch)

	var starts []time.Time
	waitFor(t, 3*time.Minute, "50 runs", func() (bool, string) {
		starts = starts[:0]
		for _, sha := range shas {
			d, err := c.DescribeWorkflowExecution(context.Background(), contract.ChangeWorkflowID(branch, sha), "")
			if err != nil {
				return false, fmt.Sprintf("%d of 50 started", len(starts))
			}
			starts = append(starts, d.GetWorkflowExecutionInfo().GetStartTime().AsTime())
		}
		return true, ""
	})
	for i := 1; i < len(starts); i++ {
		if starts[i].Before(starts[i-1]) {
			t.Fatalf("run of commit %d started before the run of commit %d", i, i-1)
		}
	}
}

// A webhook delivered twice starts one run; a push whose webhook is lost is
// found by the next poll; a forged delivery is refused and starts nothing.
func TestWebhookPokesAndPollCatchesTheRest(t *testing.T) {
	const branch = "e2e-webhook"
	remote, _, w := triggerSetup(t, branch, 5*time.Second)
	c, url := w.Client(), "http://"+w.Addr()
	ctx := context.Background()

	deliver := func(secret string) int {
		body := fmt.Sprintf(`{"ref":"refs/heads/%s"}`, branch)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(body))
		req, _ := http.NewRequest(http.MethodPost, url+"/webhooks/github", strings.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	a := remote.Commit("A", map[string]string{"README.md": "a\n"})
	if got := deliver("forged"); got != http.StatusUnauthorized {
		t.Fatalf("forged delivery: status %d, want 401", got)
	}
	for range 2 {
		if got := deliver("gh-secret"); got != http.StatusAccepted {
			t.Fatalf("delivery: status %d, want 202", got)
		}
	}
	waitState(t, c, contract.ChangeWorkflowID(branch, a), 30*time.Second, contract.StateNoOp)
	b := remote.Commit("B, whose webhook is lost", map[string]string{"README.md": "b\n"})
	waitState(t, c, contract.ChangeWorkflowID(branch, b), 30*time.Second, contract.StateNoOp)

	for _, sha := range []string{a, b} {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s'", contract.ChangeWorkflowID(branch, sha)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetExecutions()); n != 1 {
			t.Errorf("commit %s has %d runs, want 1", sha[:7], n)
		}
	}
}

// A force push is reported and held: nothing from the rewritten part runs
// until `changeops ack-rewrite`, and later commits run after it.
func TestForcePushIsHeldUntilAcknowledged(t *testing.T) {
	const branch = "e2e-rewrite"
	remote, _, w := triggerSetup(t, branch, time.Second)
	c := w.Client()
	ctx := context.Background()
	base := remote.Git(remote.Clone, "rev-parse", "HEAD")
	seen := remote.Commit("Seen", map[string]string{"README.md": "seen\n"})
	waitState(t, c, contract.ChangeWorkflowID(branch, seen), 30*time.Second, contract.StateNoOp)

	remote.Git(remote.Clone, "reset", "-q", "--hard", base)
	rewritten := remote.Commit("Rewritten", map[string]string{"README.md": "rewritten\n"})
	var st workflows.WatcherStatus
	waitFor(t, 30*time.Second, "watcher holds the rewrite", func() (bool, string) {
		st = watcherStatus(t, c, branch)
		return st.Held != nil, fmt.Sprintf("%+v", st)
	})
	if st.Held.LastSeen != seen || st.Held.Head != rewritten {
		t.Fatalf("held = %+v, want the lost %s and the new head %s", st.Held, seen[:7], rewritten[:7])
	}
	if _, err := c.DescribeWorkflowExecution(ctx, contract.ChangeWorkflowID(branch, rewritten), ""); err == nil {
		t.Fatal("the rewritten head got a run while held")
	}
	if code, _, stderr := changeops(t, "ack-rewrite", branch); code != 0 {
		t.Fatalf("changeops ack-rewrite: %d %s", code, stderr)
	}
	if code, _, stderr := changeops(t, "ack-rewrite", branch, "--as", "carol"); code != 1 || !strings.Contains(stderr, "no rewrite waiting") {
		t.Errorf("a second ack: %d %q, want a refusal", code, stderr)
	}
	after := remote.Commit("After", map[string]string{"README.md": "after\n"})
	waitState(t, c, contract.ChangeWorkflowID(branch, after), 30*time.Second, contract.StateNoOp)
	if _, err := c.DescribeWorkflowExecution(ctx, contract.ChangeWorkflowID(branch, rewritten), ""); err == nil {
		t.Error("the rewritten head got a run after the ack")
	}
	recordHistory(t, c, contract.WatcherWorkflowID(branch), "watcher_rewrite_held.json")
}

// A remote that goes away is reported once and, when back, no commit pushed
// meanwhile is skipped.
func TestRemoteDownThenUpSkipsNothing(t *testing.T) {
	const branch = "e2e-outage"
	remote, _, w := triggerSetup(t, branch, time.Second)
	c := w.Client()
	away := remote.Bare + ".away"
	if err := os.Rename(remote.Bare, away); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "watcher reports the outage", func() (bool, string) {
		st := watcherStatus(t, c, branch)
		return st.Outage != "", fmt.Sprintf("%+v", st)
	})
	// Two commits land while the remote is unreachable to changeops.
	remote.Git(remote.Clone, "remote", "set-url", "origin", away)
	one := remote.Commit("One", map[string]string{"README.md": "one\n"})
	two := remote.Commit("Two", map[string]string{"README.md": "two\n"})
	if err := os.Rename(away, remote.Bare); err != nil {
		t.Fatal(err)
	}
	for _, sha := range []string{one, two} {
		waitState(t, c, contract.ChangeWorkflowID(branch, sha), 2*time.Minute, contract.StateNoOp)
	}
	if st := watcherStatus(t, c, branch); st.Outage != "" {
		t.Errorf("after recovery: status %+v, want no outage", st)
	}
	recordHistory(t, c, contract.WatcherWorkflowID(branch), "watcher_poll_outage.json")
}

// A worker configured with another task queue than the branch's running
// watcher refuses to start, saying how to move it, instead of leaving the
// branch unwatched.
func TestWatcherOnAnotherTaskQueueIsRefused(t *testing.T) {
	const branch = "e2e-queue"
	remote := gittest.New(t, branch)
	remote.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "x"), "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{Name: "site-queue", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	w := startWorkerFull(t, cfg)
	w.Stop()

	cfg.Temporal.TaskQueue = "e2e-queue-moved"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := worker.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), `watcher watcher/e2e-queue already runs on task queue "e2e-e2e-queue"`) {
		t.Fatalf("start on another task queue: err = %v", err)
	}
}

// Two repositories in one configuration: each has its watcher, a push to the
// second deploys the second's stack (the same folder name in the first is
// not touched), under an ID that names the repository.
func TestSecondRepositoryDeploysItsOwnStacks(t *testing.T) {
	const branch = "e2e-repos"
	infra := gittest.New(t, branch)
	infra.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "x"), "v1"))
	network := gittest.New(t, "main")
	out := filepath.Join(t.TempDir(), "net.txt")
	network.Commit("Add the network stack", siteProject("stacks/site", out, "v1"))

	cfg := testConfig(t, infra.Bare, branch,
		config.Stack{Name: "site-repos", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	cfg.Repos = []config.Repo{{Name: "network", URL: network.Bare, Branch: "main", PollInterval: config.Duration(time.Second)}}
	cfg.Stacks = append(cfg.Stacks, config.Stack{Name: "net", Repo: "network", Path: "stacks/site", Stack: "test",
		Approval: config.ApprovalAuto, Verify: []config.Check{{Command: []string{"./check.sh"}}}})
	cfg.ApplyDefaults(cfg.DataDir)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	waitFor(t, 30*time.Second, "watcher of network/main", func() (bool, string) {
		return countActivities(t, c, contract.WatcherID("network", "main"), "PollBranch") >= 1, "no poll yet"
	})

	sha := network.Commit("Network v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	run := waitState(t, c, contract.ChangeID("network", "main", sha), 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded || len(run.Stacks) != 1 || run.Stacks[0] != "net" {
		t.Fatalf("run = %s %v (%s), want succeeded on stack net only", run.State, run.Stacks, run.Error)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v2" {
		t.Fatalf("network file = %q, %v; want v2", got, err)
	}
}

// Commits pushed while no worker runs are all started, once, by the next
// worker: the watcher's position is durable, not in the worker's memory.
func TestWorkerRestartSkipsAndRepeatsNothing(t *testing.T) {
	const branch = "e2e-restart"
	remote, cfg, w := triggerSetup(t, branch, time.Second)
	c := w.Client()
	first := remote.Commit("Before the restart", map[string]string{"README.md": "1\n"})
	waitState(t, c, contract.ChangeWorkflowID(branch, first), 30*time.Second, contract.StateNoOp)

	// Stop the worker (its cleanup stops it again, harmlessly) and push
	// while nothing polls.
	ctx := context.Background()
	w.Stop()
	second := remote.Commit("While down 1", map[string]string{"README.md": "2\n"})
	third := remote.Commit("While down 2", map[string]string{"README.md": "3\n"})
	c = startWorker(t, cfg)
	for _, sha := range []string{second, third} {
		waitState(t, c, contract.ChangeWorkflowID(branch, sha), time.Minute, contract.StateNoOp)
	}
	for _, sha := range []string{first, second, third} {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s'", contract.ChangeWorkflowID(branch, sha)),
		})
		if err != nil || len(resp.GetExecutions()) != 1 {
			t.Errorf("commit %s: %d runs (%v), want exactly 1", sha[:7], len(resp.GetExecutions()), err)
		}
	}
}

// watcherStatus queries a branch's watcher.
func watcherStatus(t *testing.T, c client.Client, branch string) workflows.WatcherStatus {
	t.Helper()
	var st workflows.WatcherStatus
	v, err := c.QueryWorkflow(context.Background(), contract.WatcherWorkflowID(branch), "", contract.WatcherStatusQuery)
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		t.Logf("query watcher of %s: %v", branch, err)
	}
	return st
}
