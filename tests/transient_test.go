package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// A cloud API that throttles the first two ups is retried, not rolled
// back: the change succeeds on the third attempt and no revert is pushed.
func TestTransientApplyErrorIsRetried(t *testing.T) {
	f := newFaultFixture(t, "throttle", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto},
		siteProject("stacks/site", filepath.Join(t.TempDir(), "v1.txt"), "v1"))
	counter := filepath.Join(f.dir, "throttled")
	startWorkerProcess(t, f.cfg, "worker", []string{
		"CHANGEOPS_FILE_THROTTLE=page.txt", "CHANGEOPS_FILE_THROTTLE_TIMES=2", "CHANGEOPS_FILE_THROTTLE_COUNT=" + counter,
	})
	waitWatching(t, f.c, f.branch)

	id := f.push("v2")
	run := waitState(t, f.c, id, 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack, contract.StateRollbackFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if b, _ := os.ReadFile(counter); strings.Count(string(b), "\n") != 2 {
		t.Fatalf("the provider throttled %q, want twice", b)
	}
	if got, _ := os.ReadFile(filepath.Join(f.dir, "page.txt")); string(got) != "v2" {
		t.Fatalf("page = %q, want v2", got)
	}
	if log := f.remote.Git(f.remote.Clone, "log", "--format=%s", "origin/"+f.branch); strings.Contains(log, "Revert") {
		t.Fatalf("a revert was pushed for a change that succeeded:\n%s", log)
	}
}

// A stack locked by someone else (here a DIY lock file of a live process,
// as `pulumi up` on a laptop leaves it) is waited for, visibly (in the
// run's status and its Slack thread); once the
// lock is released the approved change applies. A lock held past the
// stack's lock_wait fails the change without rolling back or reverting
// anything, since nothing was applied.
func TestLockedStackIsWaitedFor(t *testing.T) {
	const branch = "e2e-locked"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "page.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-locked", Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
		LockWait: config.Duration(20 * time.Second),
	})
	ws := slackWorkspace(t, cfg)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	ctx := context.Background()
	state := strings.TrimPrefix(cfg.Pulumi.BackendURL, "file://")

	// 1. Locked after approval, released while the run waits: applied.
	sha := remote.Commit("Serve v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	id := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
	unlock := lockStack(t, state, "site", "test")
	if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the run shows it waits for the lock", func() (bool, string) {
		run, err := starter.Status(ctx, c, id)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(strings.Join(run.Retrying, "; "), "waiting for the lock held by laptop-user@laptop (pid"), strings.Join(run.Retrying, "; ")
	})
	waitFor(t, time.Minute, "the run's Slack thread says it waits for the lock", func() (bool, string) {
		parent, ok := ws.parentOf(sha[:7])
		if !ok {
			return false, "no parent message"
		}
		var got []string
		for _, m := range ws.thread(parent.TS) {
			if strings.Contains(m.Text, "waiting for the lock on site-locked") &&
				strings.Contains(m.Blocks, "waiting for the lock held by laptop-user@laptop") &&
				strings.Contains(m.Blocks, "stacks[].lock_wait of site-locked is 20s") {
				return true, ""
			}
			got = append(got, m.Text)
		}
		return false, strings.Join(got, " | ")
	})
	unlock()
	if run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack); run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}

	// 2. Locked for longer than lock_wait: failed, nothing rolled back.
	sha = remote.Commit("Serve v3", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v3\n"})
	id = contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
	defer lockStack(t, state, "site", "test")()
	if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "")); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack, contract.StateRollbackFailed)
	for _, want := range []string{"waiting for the lock held by laptop-user@laptop", "stacks[].lock_wait of site-locked is 20s", "nothing was applied, so nothing is rolled back"} {
		if run.State != contract.StateFailed || !strings.Contains(run.Status.Detail, want) {
			t.Errorf("run = %s %q, want failed saying %q", run.State, run.Status.Detail, want)
		}
	}
	if got, _ := os.ReadFile(out); string(got) != "v2" {
		t.Errorf("page = %q, want v2 still", got)
	}
	recordHistory(t, c, id, "change_lock_held_past_lock_wait.json")
	if log := remote.Git(remote.Clone, "log", "--format=%s", "origin/"+branch); strings.Contains(log, "Revert") {
		t.Errorf("a revert was pushed for a change that was never applied:\n%s", log)
	}
}

// lockStack writes a DIY backend's lock for a stack as the Pulumi CLI
// does, held by this (live) process; the returned func releases it.
func lockStack(t *testing.T, state, project, stack string) func() {
	t.Helper()
	dir := filepath.Join(state, ".pulumi", "locks", "organization", project, stack)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "username": "laptop-user", "hostname": "laptop", "timestamp": time.Now().UTC()})
	path := filepath.Join(dir, fmt.Sprintf("00000000-0000-4000-8000-%012d.json", time.Now().UnixNano()%1e12))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() { os.Remove(path) }
}
