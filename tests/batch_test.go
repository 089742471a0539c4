package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// pushAtOnce commits each content as its own change of the page and
// pushes them together, so the watcher starts their runs in one poll.
func pushAtOnce(remote *gittest.Remote, page, footer string, contents ...string) []string {
	var shas []string
	for _, content := range contents {
		remote.Write(map[string]string{"stacks/site/Pulumi.test.yaml": pageConfig(page, footer, content)})
		remote.Git(remote.Clone, "add", "-A")
		remote.Git(remote.Clone, "commit", "-q", "-m", "Serve "+content)
		shas = append(shas, remote.Git(remote.Clone, "rev-parse", "HEAD"))
	}
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:"+remote.Branch)
	return shas
}

// batchSetup is a site stack with batch: 8 whose verification fails when
// the page says "broken", watched on branch; approval is auto unless
// prepare, called before the worker starts, says otherwise.
func batchSetup(t *testing.T, branch, stack string, prepare func(*config.Config)) (*gittest.Remote, *config.Config, client.Client, string, string) {
	t.Helper()
	remote := gittest.New(t, branch)
	dir := t.TempDir()
	page, footer := filepath.Join(dir, "page.txt"), filepath.Join(dir, "footer.txt")
	remote.Commit("Add the site stack", pageAndFooter("stacks/site", page, footer, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: stack, Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto, Batch: 8,
		Verify: []config.Check{{Command: []string{"sh", "-c",
			`test "$(cat "$PULUMI_OUTPUT_PATH")" != broken || { echo page is broken; exit 3; }`}}},
		VerifyTimeout: config.Duration(5 * time.Second),
	})
	if prepare != nil {
		prepare(cfg)
	}
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	return remote, cfg, c, page, footer
}

// Eight changes merged at once on a stack with batch: 8 deploy in at most
// two ups (the first run may be granted before the others are queued),
// and each run ends succeeded with its own record of the batch.
func TestQueuedChangesDeployInABatch(t *testing.T) {
	const branch = "e2e-batch"
	remote, cfg, c, page, footer := batchSetup(t, branch, "site-batch", nil)

	var contents []string
	for i := 1; i <= 8; i++ {
		contents = append(contents, fmt.Sprintf("c%d", i))
	}
	shas := pushAtOnce(remote, page, footer, contents...)

	batched, leader := 0, ""
	for i, sha := range shas {
		id := contract.ChangeWorkflowID(branch, sha)
		run := waitState(t, c, id, 4*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack, contract.StateRollbackFailed)
		if run.State != contract.StateSucceeded {
			t.Fatalf("%s (%s) ended %s: %s", contents[i], sha[:7], run.State, run.Error)
		}
		b := run.Status.Batch
		if b == nil {
			continue // deployed alone, before the others were queued
		}
		batched++
		if b.Leader == id {
			leader = id
		}
		if !strings.HasPrefix(run.Status.Detail, "deployed in batch with ") {
			t.Errorf("%s ended %q, want it to say which batch deployed it", contents[i], run.Status.Detail)
		}
	}
	if batched < 7 || leader == "" {
		t.Fatalf("%d of 8 runs were deployed in a batch (leader %q), want at least 7", batched, leader)
	}
	if n := updatesOf(t, cfg, "test"); n > 2 {
		t.Errorf("the engine ran %d ups for 8 changes, want at most 2", n)
	}
	if got := readFile(t, page); got != "c8" {
		t.Errorf("page = %q, want the newest change's c8", got)
	}
	recordHistory(t, c, leader, "change_batch_leader.json")
	// change_batch_member.json is a member from before check-batched.
	recordHistory(t, c, contract.ChangeWorkflowID(branch, shas[7]), "change_batch_member_checked.json")
}

// One bad change among 8 merged at once: the batch fails verification,
// the stack is restored, bisection finds the bad one, which alone is
// reverted and ends rolled back; the other 7 end succeeded and the stack
// holds every change but the bad one.
func TestBadChangeInABatchIsBisected(t *testing.T) {
	const branch = "e2e-bisect"
	remote, cfg, c, page, footer := batchSetup(t, branch, "site-bisect", nil)

	// c1..c8 each rewrite the footer, but c5 breaks the page: its revert
	// touches a file no later commit changes, so it applies cleanly.
	var shas []string
	for i := 1; i <= 8; i++ {
		files := map[string]string{"stacks/site/footer.txt": fmt.Sprintf("footer c%d\n", i)}
		if i == 5 {
			files = map[string]string{"stacks/site/Pulumi.test.yaml": pageConfig(page, footer, "broken")}
		}
		remote.Write(files)
		remote.Git(remote.Clone, "add", "-A")
		remote.Git(remote.Clone, "commit", "-q", "-m", fmt.Sprintf("Change c%d", i))
		shas = append(shas, remote.Git(remote.Clone, "rev-parse", "HEAD"))
	}
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:"+remote.Branch)

	leader := ""
	for i, sha := range shas {
		id := contract.ChangeWorkflowID(branch, sha)
		want := contract.StateSucceeded
		if i == 4 {
			want = contract.StateRolledBack
		}
		run := waitState(t, c, id, 5*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack, contract.StateRollbackFailed)
		if run.State != want {
			t.Fatalf("c%d (%s) ended %s, want %s: %s %s", i+1, sha[:7], run.State, want, run.Status.Detail, run.Error)
		}
		if i == 4 && run.RevertCommit == "" {
			t.Errorf("c5 rolled back without a revert commit")
		}
		if b := run.Status.Batch; b != nil && b.Leader == id {
			leader = id
		}
	}
	if leader == "" {
		t.Fatal("no run led a batch")
	}
	if got := readFile(t, page); got != "v1" {
		t.Errorf("page = %q, want v1: c5's change reverted", got)
	}
	if got := readFile(t, footer); got != "footer c8\n" {
		t.Errorf("footer = %q, want c8's", got)
	}
	// At most: c1 alone (granted before the others queued), the batch, the
	// restore, log2(8) = 3 halves, the rest without c5.
	n := updatesOf(t, cfg, "test")
	t.Logf("%d ups for 8 changes with one bad", n)
	if n > 7 {
		t.Errorf("the engine ran %d ups for 8 changes with one bad, want at most 7", n)
	}
	// change_batch_bisected_{leader,member}.json are from before
	// batch-approvals (bisection judged every failure the tree's, and
	// trial trees were not planned first).
	recordHistory(t, c, leader, "change_batch_bisected_judged_leader.json")
	recordHistory(t, c, contract.ChangeWorkflowID(branch, shas[4]), "change_batch_bisected_checked_member.json")
}

// On a manual stack with batch: 8, four changes queued behind a leader
// deploy with it on one signed approval: the leader asks once, its Slack
// request lists every commit in the batch, a decision sent to a member is
// refused pointing at the leader, and every run ends succeeded with the
// approver in its status and in the audit.
func TestManualBatchOneApproval(t *testing.T) {
	const branch, stack = "e2e-batch-manual", "site-batch-manual"
	var ws *workspace
	remote, cfg, c, page, footer := batchSetup(t, branch, stack, func(cfg *config.Config) {
		s := &cfg.Stacks[0]
		s.Approval, s.Approvers = config.ApprovalManual, []string{"bob"}
		ws = slackWorkspace(t, cfg)
	})
	ctx := context.Background()

	// c0 holds the stack while it waits for its own approval, so the
	// five merged next queue behind it: c1 leads, c2..c5 are its batch.
	first := pushAtOnce(remote, page, footer, "c0")[0]
	firstID := contract.ChangeWorkflowID(branch, first)
	waitState(t, c, firstID, 2*time.Minute, contract.StateAwaitingApproval)
	shas := pushAtOnce(remote, page, footer, "c1", "c2", "c3", "c4", "c5")
	ids := make([]string, len(shas))
	for i, sha := range shas {
		ids[i] = contract.ChangeWorkflowID(branch, sha)
		waitState(t, c, ids[i], time.Minute, contract.StateQueued)
	}
	if _, err := starter.Decide(ctx, c, firstID, signedBy("bob", true, "first")); err != nil {
		t.Fatal(err)
	}

	leader := waitState(t, c, ids[0], 3*time.Minute, contract.StateAwaitingApproval)
	if n := len(leader.Status.BatchCommits); n != 5 {
		t.Fatalf("the leader asks for %d commits, want the batch of 5: %+v", n, leader.Status.Batch)
	}
	// A member waits on its batch's approval and refuses its own.
	waitFor(t, 30*time.Second, "c3 hears its batch asks", func() (bool, string) {
		run, err := starter.Status(ctx, c, ids[2])
		if err != nil || run.Status == nil {
			return false, fmt.Sprint(err)
		}
		return run.Status.BatchPending != nil && run.Status.BatchPending.Leader == ids[0], run.Status.Detail
	})
	if _, err := starter.Decide(ctx, c, ids[2], signedBy("bob", true, "")); err == nil ||
		!strings.Contains(err.Error(), "decide that run, e.g. changeops approve "+ids[0]) {
		t.Fatalf("approving a member: %v, want a refusal naming the leader's run", err)
	}
	// The Slack request lists every commit of the batch.
	parent, ok := ws.parentOf(shas[0][:7])
	if !ok {
		t.Fatal("no Slack message for the leader")
	}
	var request string
	for _, m := range ws.thread(parent.TS) {
		if strings.Contains(m.Blocks, "This decision covers the batch of 5 changes") {
			request = m.Blocks
		}
	}
	for i, sha := range shas {
		if want := fmt.Sprintf("%s Serve c%d (alice)", sha[:7], i+1); !strings.Contains(request, want) {
			t.Errorf("the approval request does not list %q: %s", want, request)
		}
	}

	if _, err := starter.Decide(ctx, c, ids[0], signedBy("bob", true, "the batch")); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		run := waitState(t, c, id, 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack, contract.StateExpired)
		switch {
		case run.State != contract.StateSucceeded:
			t.Fatalf("c%d ended %s: %s", i+1, run.State, run.Status.Detail)
		case run.Status.Batch == nil || run.Status.Batch.Leader != ids[0]:
			t.Errorf("c%d was not deployed in c1's batch: %+v", i+1, run.Status.Batch)
		case run.Status.Decision == nil || run.Status.Decision.User != "bob" || run.Status.Decision.Comment != "the batch":
			t.Errorf("c%d's status does not show the batch's approver: %+v", i+1, run.Status.Decision)
		}
	}
	if n := updatesOf(t, cfg, "test"); n > 2 {
		t.Errorf("the engine ran %d ups for c0 and the batch of 5, want 2", n)
	}
	if got := readFile(t, page); got != "c5" {
		t.Errorf("page = %q, want the newest change's c5", got)
	}
	recs, err := starter.Audit(ctx, c, starter.Filter{Stack: stack, Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	approver := map[string]string{}
	for _, r := range recs {
		approver[r.ID] = r.Approver
	}
	for i, id := range ids {
		if approver[id] != "bob" {
			t.Errorf("audit: c%d's approver is %q, want bob (audit: %v)", i+1, approver[id], approver)
		}
	}
	recordHistory(t, c, ids[0], "change_batch_approved_leader.json")
	recordHistory(t, c, ids[2], "change_batch_approved_member.json")
}
