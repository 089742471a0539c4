package tests

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/worker"
)

// A worker told to stop (SIGTERM, Ctrl-C) stops taking work but lets the
// verification it is running finish within temporal.worker_stop_timeout
// instead of cancelling it: the check runs once, to its end, its activity
// completes on the first attempt, and a new worker finishes the run.
func TestStoppingWorkerLetsRunningActivitiesFinish(t *testing.T) {
	const branch = "e2e-stop"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	marks := filepath.Join(t.TempDir(), "marks")
	// The check is the slow work in flight: it marks its start and, three
	// seconds later, its end.
	check := "echo start >> " + marks + "; sleep 3; echo end >> " + marks
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-stop", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{Command: []string{"sh", "-c", check}}},
	})
	cfg.Temporal.WorkerStopTimeout = config.Duration(30 * time.Second)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	w, err := worker.Start(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	c := w.Client()
	waitWatching(t, c, branch)

	sha := remote.Commit("Serve v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	id := contract.ChangeWorkflowID(branch, sha)
	waitFor(t, 2*time.Minute, "the verification check running", func() (bool, string) {
		b, _ := os.ReadFile(marks)
		return strings.Contains(string(b), "start"), string(b)
	})
	stopping := time.Now()
	w.Stop()
	took := time.Since(stopping)
	if b, _ := os.ReadFile(marks); string(b) != "start\nend\n" {
		t.Fatalf("after Stop the check's marks are %q: it was cut short, want start and end", b)
	}
	if took >= 30*time.Second {
		t.Errorf("Stop took %s, beyond the 30 s grace period", took)
	}

	w2 := startWorker(t, cfg)
	run := waitState(t, w2, id, 2*time.Minute, contract.StateSucceeded, contract.StateRolledBack, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if n := countActivities(t, w2, id, "Verify"); n != 1 {
		t.Errorf("Verify attempted %d times, want once: the stopping worker finished it", n)
	}
	if b, _ := os.ReadFile(marks); string(b) != "start\nend\n" {
		t.Errorf("the check ran again after the restart: marks %q", b)
	}
}
