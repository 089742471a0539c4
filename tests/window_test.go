package tests

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/workflows"
)

// The emergency stop on the real engine: a frozen stack plans and asks as
// usual, is approved, and applies nothing; the run waits in
// waiting-for-window (its status, `list` and the Temporal UI's current
// details say why) holding its stack, so the next change to the stack
// waits in the queue behind it. Temporal access alone cannot lift the
// freeze, not even by terminating the freezes workflow. The worker is
// killed while the run waits and another started; a signed unfreeze
// wakes the run, it applies, and the change behind it
// follows in merge order. The audit names who froze and who unfroze, and
// why.
func TestFreezeHoldsTheApplyUntilUnfrozen(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t, "freeze", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob", "carol"}},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	const stack = "fault-freeze"
	page := filepath.Join(f.dir, "page.txt")
	ctx := context.Background()
	w1 := startWorkerProcess(t, f.cfg, "worker1", nil)
	waitWatching(t, f.c, f.branch)

	code, out, errOut := changeopsWith(t, f.cfg, "freeze", "--stack", stack, "--reason", "incident 12", "--as", "carol", "--key", keyFile(t, "carol"))
	if code != 0 || !strings.Contains(out, "frozen stack "+stack+" by carol: incident 12") {
		t.Fatalf("changeops freeze = %d, %q, %q", code, out, errOut)
	}
	freezes := contract.FreezesID(f.cfg.Temporal.TaskQueue)
	// What `temporal workflow update execute --name unfreeze` sends.
	h, err := f.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: freezes, UpdateName: contract.UnfreezeUpdate,
		Args: []any{workflows.FreezeRequest{}}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err == nil || !strings.Contains(err.Error(), "the unfreeze is not signed") {
		t.Fatalf("an unsigned unfreeze: err = %v, want refused as not signed", err)
	}

	id := f.push("v2")
	waitState(t, f.c, id, time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(ctx, f.c, id, signedBy("bob", true, "ship it")); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, f.c, id, time.Minute, contract.StateWaitingForWindow)
	if !strings.Contains(run.Detail, "stack "+stack+" frozen by carol") || !strings.Contains(run.Detail, "incident 12; applies once unfrozen") {
		t.Errorf("detail = %q, want the freeze, who and why", run.Detail)
	}
	if d := currentDetails(t, f.c, id); d != run.Detail {
		t.Errorf("the Temporal UI's current details = %q, want %q", d, run.Detail)
	}
	code, out, errOut = changeopsWith(t, f.cfg, "list", "--stack", stack)
	if code != 0 || !strings.Contains(out, "FROZEN: stack "+stack+" frozen by carol since") || !strings.Contains(out, contract.StateWaitingForWindow) {
		t.Errorf("changeops list = %d, %q, %q; want the freeze and the waiting run", code, out, errOut)
	}

	// The next change to the stack waits behind it, in the queue.
	id2 := f.push("v3")
	waitState(t, f.c, id2, time.Minute, contract.StateQueued)
	waitFor(t, 30*time.Second, "the second run queued behind the first", func() (bool, string) {
		v, err := f.c.QueryWorkflow(ctx, contract.QueueID(stack), "", contract.QueueStatusQuery)
		if err != nil {
			return false, err.Error()
		}
		var q contract.QueueState
		if err := v.Get(&q); err != nil {
			return false, err.Error()
		}
		return q.Holder != nil && q.Holder.RunID == id && slices.ContainsFunc(q.Waiting, func(e contract.QueueEntry) bool { return e.RunID == id2 }),
			"holder and waiting: " + strings.Join(queueRuns(q), ", ")
	})

	// The worker dies while the run waits; another takes over.
	w1.kill()
	w2 := startWorkerProcess(t, f.cfg, "worker2", nil)
	if run := waitState(t, f.c, id, time.Minute, contract.StateWaitingForWindow); len(run.Status.Applies) != 0 {
		t.Fatalf("applied while frozen: %+v", run.Status.Applies)
	}
	if _, err := os.Stat(page); err == nil {
		t.Fatal("the page was written while the stack was frozen")
	}
	if run, _ := starter.Status(ctx, f.c, id2); run.State != contract.StateQueued {
		t.Fatalf("the second run is %s, want still queued behind the frozen one", run.State)
	}

	// Terminating the freezes workflow lifts nothing: its last state is
	// still read, and the run the unfreeze starts reads it back.
	recordHistory(t, f.c, freezes, "freezes_first_run.json")
	if err := f.c.TerminateWorkflow(ctx, freezes, "", "an attempt to lift the freeze without a signature"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = changeopsWith(t, f.cfg, "list", "--stack", stack)
	if code != 0 || !strings.Contains(out, "FROZEN: stack "+stack+" frozen by carol since") {
		t.Errorf("changeops list after the freezes workflow was terminated = %d, %q, %q; want the freeze", code, out, errOut)
	}
	code, out, errOut = changeopsWith(t, f.cfg, "unfreeze", "--stack", stack, "--reason", "incident over", "--as", "bob", "--key", keyFile(t, "bob"))
	if code != 0 || !strings.Contains(out, "unfrozen stack "+stack) {
		t.Fatalf("changeops unfreeze = %d, %q, %q", code, out, errOut)
	}
	// Woken by the freezes workflow, not by its half-hourly check.
	run = waitState(t, f.c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, page, "v2")
	waitState(t, f.c, id2, 2*time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(ctx, f.c, id2, signedBy("carol", true, "")); err != nil {
		t.Fatal(err)
	}
	if run := waitState(t, f.c, id2, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("second run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, page, "v3")
	f.expectNotes(f.c, id, []*workerProcess{w1, w2}, "awaiting approval", "approved by bob", "waiting for window", "window open", "applied", contract.StateSucceeded)

	code, out, errOut = changeopsWith(t, f.cfg, "audit", "--kind", "freeze")
	for _, want := range []string{`"state":"freeze"`, `"approver":"carol"`, `"comment":"incident 12"`, `"state":"unfreeze"`, `"approver":"bob"`, `"comment":"incident over"`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("changeops audit --kind freeze = %d, %q, %q; want %s", code, out, errOut, want)
		}
	}
	recordHistory(t, f.c, id, "change_waited_for_freeze.json")
	recordHistory(t, f.c, freezes, "freezes_after_terminate.json")
}

// currentDetails is what the Temporal UI shows as a run's current details.
func currentDetails(t *testing.T, c client.Client, id string) string {
	t.Helper()
	v, err := c.QueryWorkflow(context.Background(), id, "", "__temporal_workflow_metadata")
	if err != nil {
		t.Fatal(err)
	}
	var md sdkpb.WorkflowMetadata
	if err := v.Get(&md); err != nil {
		t.Fatal(err)
	}
	return md.GetCurrentDetails()
}

func queueRuns(q contract.QueueState) []string {
	var out []string
	if q.Holder != nil {
		out = append(out, "holder "+q.Holder.RunID)
	}
	for _, e := range q.Waiting {
		out = append(out, "waiting "+e.RunID)
	}
	return out
}
