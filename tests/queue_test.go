package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// pageAndFooter is a Pulumi YAML project writing two files: the page from
// stack config (Pulumi.test.yaml) and the footer from footer.txt, so two
// commits can change the same stack in different files.
func pageAndFooter(dir, page, footer, content string) map[string]string {
	return map[string]string{
		dir + "/Pulumi.yaml": siteProgram([]string{"footerFile"},
			fileResource("page", "${outFile}", "${content}"),
			fileResource("footer", "${footerFile}", "fn::readFile: ./footer.txt")),
		dir + "/Pulumi.test.yaml": pageConfig(page, footer, content),
		dir + "/footer.txt":       "footer v1\n",
	}
}

func pageConfig(page, footer, content string) string {
	return "config:\n  site:outFile: " + page + "\n  site:footerFile: " + footer + "\n  site:content: " + content + "\n"
}

// queueFixture is a stack whose verification fails when the page says
// "broken", approved by bob, with a good first change (v2) deployed.
type queueFixture struct {
	remote             *gittest.Remote
	cfg                *config.Config
	c                  client.Client
	branch             string
	page, footer, good string
}

func queueSetup(t *testing.T, branch, stack string) *queueFixture {
	t.Helper()
	f := &queueFixture{remote: gittest.New(t, branch), branch: branch}
	dir := t.TempDir()
	f.page, f.footer = filepath.Join(dir, "page.txt"), filepath.Join(dir, "footer.txt")
	f.remote.Commit("Add the site stack", pageAndFooter("stacks/site", f.page, f.footer, "v1"))
	f.cfg = testConfig(t, f.remote.Bare, branch, config.Stack{
		Name: stack, Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
		Verify: []config.Check{{Command: []string{"sh", "-c",
			`test "$(cat "$PULUMI_OUTPUT_PATH")" != broken || { echo page is broken; exit 3; }`}}},
		VerifyTimeout: config.Duration(5 * time.Second),
	})
	f.c = startWorker(t, f.cfg)
	waitWatching(t, f.c, branch)
	f.good, _ = f.setPage("Serve v2", "v2")
	approve(t, f.c, branch, f.good)
	if run := waitState(t, f.c, contract.ChangeWorkflowID(branch, f.good), 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("first change ended %s: %s", run.State, run.Error)
	}
	return f
}

// setPage pushes a commit setting the page's content; it returns the
// commit and its run's ID.
func (f *queueFixture) setPage(msg, content string) (string, string) {
	sha := f.remote.Commit(msg, map[string]string{"stacks/site/Pulumi.test.yaml": pageConfig(f.page, f.footer, content)})
	return sha, contract.ChangeWorkflowID(f.branch, sha)
}

// breakPage pushes A, a change that will fail verification, and waits for
// it to hold the stack and ask for approval.
func (f *queueFixture) breakPage(t *testing.T) (string, string) {
	t.Helper()
	a, aID := f.setPage("A: break the page", "broken")
	waitState(t, f.c, aID, 2*time.Minute, contract.StateAwaitingApproval)
	return a, aID
}

// approve waits for the commit's run to ask, and approves it as bob.
func approve(t *testing.T, c client.Client, branch, sha string) {
	t.Helper()
	id := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, 2*time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(context.Background(), c, id, signedBy("bob", true, "")); err != nil {
		t.Fatalf("approve %s: %v", sha[:7], err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The design's example on real parts: A then B on one stack. B queues
// behind A; A fails verification and is reverted after B was merged; B
// then deploys tree(B) minus A (B's footer, the good page), and the
// revert's own run is a no-op.
func TestQueuedChangeDeploysWithoutTheRevertedOne(t *testing.T) {
	const branch = "e2e-effective"
	f := queueSetup(t, branch, "site-effective")
	remote, c, page, footer, good := f.remote, f.c, f.page, f.footer, f.good

	a, aID := f.breakPage(t)
	b := remote.Commit("B: new footer", map[string]string{"stacks/site/footer.txt": "footer B\n"})
	bID := contract.ChangeWorkflowID(branch, b)
	if run := waitState(t, c, bID, time.Minute, contract.StateQueued); !slices.Equal(run.Status.Held, nil) {
		t.Fatalf("B holds %v while A holds the stack", run.Status.Held)
	}

	approve(t, c, branch, a)
	run := waitState(t, c, aID, 3*time.Minute, contract.StateRolledBack, contract.StateRollbackFailed, contract.StateFailed, contract.StateSucceeded)
	if run.State != contract.StateRolledBack {
		t.Fatalf("A ended %s: %s", run.State, run.Error)
	}
	if r := run.Status.Restored; len(r) != 1 || r[0].Commit != good || !r[0].OK {
		t.Fatalf("A restored %+v, want the stack at %s from the queue's last good state", r, good[:7])
	}
	revert := run.RevertCommit
	if parent := remote.Git(remote.Bare, "rev-parse", revert+"^"); parent != b {
		t.Fatalf("the revert's parent is %s, want B %s (the revert lands after B)", parent, b)
	}

	// B got its turn after the revert was pushed: it plans its effective
	// tree and, approved, deploys it.
	bRun := waitState(t, c, bID, 2*time.Minute, contract.StateAwaitingApproval, contract.StateFailed)
	if bRun.State != contract.StateAwaitingApproval || !slices.Equal(bRun.Status.Undone, []string{a}) {
		t.Fatalf("B is %s with undone %v (%s), want awaiting approval without A", bRun.State, bRun.Status.Undone, bRun.Error)
	}
	approve(t, c, branch, b)
	if bRun = waitState(t, c, bID, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack); bRun.State != contract.StateSucceeded {
		t.Fatalf("B ended %s: %s", bRun.State, bRun.Error)
	}
	if got := readFile(t, page); got != "v2" {
		t.Errorf("page = %q after B, want v2: A's change must not come back", got)
	}
	if got := readFile(t, footer); got != "footer B\n" {
		t.Errorf("footer = %q after B, want B's", got)
	}
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 2 {
		t.Errorf("Pulumi state holds %d files, want 2", n)
	}

	// The revert's own run, queued behind B, finds the stack already there.
	waitState(t, c, contract.ChangeWorkflowID(branch, revert), 2*time.Minute, contract.StateNoOp)
	recordHistory(t, c, bID, "change_effective_tree.json")
	recordHistory(t, c, "queue/site-effective", "queue_after_rollback.json")
}

// A revert that conflicts (a later commit rewrote the same line) leaves git
// to a person, ends rollback-failed naming the path, and still puts the
// infrastructure back to the last good state.
func TestConflictingRevertStillRestores(t *testing.T) {
	const branch = "e2e-conflict"
	f := queueSetup(t, branch, "site-conflict")
	remote, c, page := f.remote, f.c, f.page

	a, aID := f.breakPage(t)
	fix, fixID := f.setPage("Serve v3", "v3")
	waitState(t, c, fixID, time.Minute, contract.StateQueued)

	approve(t, c, branch, a)
	run := waitState(t, c, aID, 3*time.Minute, contract.StateRolledBack, contract.StateRollbackFailed, contract.StateFailed, contract.StateSucceeded)
	if run.State != contract.StateRollbackFailed {
		t.Fatalf("A ended %s: %s", run.State, run.Error)
	}
	if !strings.Contains(run.Error, "conflicts in stacks/site/Pulumi.test.yaml: revert it by hand") {
		t.Errorf("error %q does not name the conflicting path", run.Error)
	}
	if run.RevertCommit != "" || remote.Git(remote.Bare, "rev-parse", branch) != fix {
		t.Errorf("a revert was pushed (%q) or the branch moved", run.RevertCommit)
	}
	if r := run.Status.Restored; len(r) != 1 || !r[0].OK {
		t.Errorf("restored = %+v, want the stack restored and verified", r)
	}
	// Checked while the next change waits for its approval: the stack is
	// at the last good state.
	waitState(t, c, fixID, 2*time.Minute, contract.StateAwaitingApproval)
	if got := readFile(t, page); got != "v2" {
		t.Errorf("page = %q after the rollback, want the last good v2", got)
	}
	approve(t, c, branch, fix)
	if r := waitState(t, c, fixID, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack); r.State != contract.StateSucceeded {
		t.Fatalf("the fix ended %s: %s", r.State, r.Error)
	}
	if got := readFile(t, page); got != "v3" {
		t.Errorf("page = %q after the fix, want v3", got)
	}
}

// A run terminated while it holds the stack never releases it: the queue
// notices (its periodic check), moves on to the next run, and reports it.
func TestTerminatedHolderDoesNotBlockTheQueue(t *testing.T) {
	const branch = "e2e-terminated"
	f := queueSetup(t, branch, "site-terminated")
	_, aID := f.breakPage(t)
	next, nextID := f.setPage("Serve v3", "v3")
	waitState(t, f.c, nextID, time.Minute, contract.StateQueued)

	// Whoever can reach the namespace can signal a waiting run that a
	// batch deployed it: the run asks the named leader, which denies it
	// (a real run that leads no batch), and stays queued.
	ctx := context.Background()
	forged := contract.Batched{Leader: aID, LeaderCommit: next, Head: next, Members: []string{next, next}, State: contract.StateSucceeded}
	if err := f.c.SignalWorkflow(ctx, nextID, "", contract.BatchedSignal, forged); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the forged batched signal refused", func() (bool, string) {
		r, err := starter.Status(ctx, f.c, nextID)
		if err != nil {
			return false, err.Error()
		}
		return len(r.Status.Refusals) == 1 && r.State == contract.StateQueued, fmt.Sprintf("%s %q", r.State, r.Status.Refusals)
	})
	if r, _ := starter.Status(ctx, f.c, nextID); !strings.Contains(r.Status.Refusals[0], "does not confirm it deployed") {
		t.Errorf("refusal %q, want it to say the leader does not confirm", r.Status.Refusals[0])
	}

	if err := f.c.TerminateWorkflow(ctx, aID, "", "operator gave up on it"); err != nil {
		t.Fatal(err)
	}
	// The check runs every minute: the next run gets the stack within two.
	approve(t, f.c, branch, next)
	if run := waitState(t, f.c, nextID, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("the next run ended %s: %s", run.State, run.Error)
	}
	if got := readFile(t, f.page); got != "v3" {
		t.Errorf("page = %q, want v3", got)
	}
	v, err := f.c.QueryWorkflow(ctx, "queue/site-terminated", "", contract.QueueStatusQuery)
	if err != nil {
		t.Fatal(err)
	}
	var q contract.QueueState
	if err := v.Get(&q); err != nil {
		t.Fatal(err)
	}
	if len(q.Skipped) != 1 || !strings.Contains(q.Skipped[0], aID) || !strings.Contains(q.Skipped[0], "without releasing") {
		t.Errorf("queue skipped %q, want the terminated run reported", q.Skipped)
	}
	if q.Holder != nil || q.LastGood == nil || q.LastGood.Commit != next {
		t.Errorf("queue holder %+v, last good %+v; want free, last good the v3 commit", q.Holder, q.LastGood)
	}
	recordHistory(t, f.c, nextID, "change_batched_refused.json")
}
