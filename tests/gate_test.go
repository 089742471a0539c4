package tests

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/gate/gatetest"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/workflows"
)

// The approval gate against someone with ordinary access: Temporal access
// alone (a raw Update, a signal, a workflow started by hand), a signed
// decision carried over to another run, and the person who merged a
// change approving it under four eyes. Every attempt is refused with a
// reason, nothing is applied, and the run still waits for an approver.
func TestApprovalGate(t *testing.T) {
	const branch = "e2e-gate"
	remote := gittest.New(t, branch)
	outA, outB := filepath.Join(t.TempDir(), "a.txt"), filepath.Join(t.TempDir(), "b.txt")
	// Two stacks of project site: test and b.
	files := siteProject("stacks/a", outA, "v1")
	for name, content := range siteProject("stacks/b", outB, "v1") {
		files[strings.Replace(name, "Pulumi.test.yaml", "Pulumi.b.yaml", 1)] = content
	}
	remote.Commit("Add stacks a and b", files)
	cfg := testConfig(t, remote.Bare, branch,
		config.Stack{Name: "gate-a", Path: "stacks/a", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob", "dave"}, FourEyes: true},
		config.Stack{Name: "gate-b", Path: "stacks/b", Stack: "b", Approval: config.ApprovalManual, Approvers: []string{"bob"}},
	)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	// Change a is alice's, merged by dave (its committer).
	remote.Write(map[string]string{"stacks/a/Pulumi.test.yaml": "config:\n  site:outFile: " + outA + "\n  site:content: v2\n"})
	remote.Git(remote.Clone, "add", "-A")
	remote.Git(remote.Clone, "-c", "user.name=dave", "-c", "user.email=dave@example.com",
		"commit", "-q", "--author", "alice <alice@example.com>", "-m", "Serve a v2")
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:"+branch)
	shaA := remote.Git(remote.Clone, "rev-parse", "HEAD")
	shaB := remote.Commit("Serve b v2", map[string]string{"stacks/b/Pulumi.b.yaml": "config:\n  site:outFile: " + outB + "\n  site:content: v2\n"})
	idA, idB := contract.ChangeWorkflowID(branch, shaA), contract.ChangeWorkflowID(branch, shaB)
	waitState(t, c, idA, time.Minute, contract.StateAwaitingApproval)
	runB := waitState(t, c, idB, time.Minute, contract.StateAwaitingApproval)
	ctx := context.Background()

	// What `temporal workflow update execute --name decide --input
	// '{"Approve":true,"User":"bob"}'` sends.
	if _, err := starter.Send(ctx, c, idA, workflows.DecisionRequest{Approve: true, User: "bob"}); err == nil ||
		!strings.Contains(err.Error(), "refused: the decision is not signed") {
		t.Errorf("forged Update: err = %v, want refused as not signed", err)
	}
	// The same as a signal: recorded as refused.
	if err := c.SignalWorkflow(ctx, idA, "", contract.DecisionSignal, workflows.DecisionRequest{Approve: true, User: "bob"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the forged signal recorded as refused", func() (bool, string) {
		run, err := starter.Status(ctx, c, idA)
		if err != nil || run.Status == nil {
			return false, "no status"
		}
		return slices.ContainsFunc(run.Status.Refusals, func(r string) bool {
			return strings.Contains(r, "decisions by signal are refused")
		}), strings.Join(run.Status.Refusals, "; ")
	})
	// bob's real decision for run b, replayed onto run a.
	forB, err := gate.SignSSH(gatetest.Signer("bob"), gate.Claim{
		WorkflowID: runB.Status.ID, RunID: runB.Status.RunID, Approve: true,
		Plan: runB.Status.PlanDigest(), Person: "bob", IssuedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := starter.Send(ctx, c, idA, workflows.DecisionRequest{Signed: &forB}); err == nil ||
		!strings.Contains(err.Error(), "the decision was signed for run "+idB) {
		t.Errorf("run b's decision on run a: err = %v, want refused as signed for %s", err, idB)
	}
	// dave merged change a: under four eyes he may not approve it.
	if _, err := starter.Decide(ctx, c, idA, signedBy("dave", true, "")); err == nil ||
		!strings.Contains(err.Error(), "dave is linked to the committer of commit "+shaA[:7]+" by email dave@example.com") {
		t.Errorf("approval by the committer: err = %v, want a four-eyes refusal naming the committer", err)
	}
	// A key nobody lists.
	if _, err := starter.Decide(ctx, c, idA, starter.Decision{Approve: true, Person: "bob", Signer: gatetest.Signer("stranger")}); err == nil ||
		!strings.Contains(err.Error(), "is not in any people entry") {
		t.Errorf("approval with an unknown key: err = %v", err)
	}
	run := waitState(t, c, idA, 10*time.Second, contract.StateAwaitingApproval)
	if run.Status.Decision != nil {
		t.Fatalf("run a was decided by %+v", run.Status.Decision)
	}
	if _, err := os.Stat(outA); err == nil {
		t.Fatal("stack a wrote its file before any approval")
	}

	// Commits that were never merged: pushed to another branch, started
	// by hand through changeops and directly through Temporal.
	remote.Git(remote.Clone, "checkout", "-q", "-b", "feature")
	remote.Write(map[string]string{"stacks/a/Pulumi.test.yaml": "config:\n  site:outFile: " + outA + "\n  site:content: evil\n"})
	remote.Git(remote.Clone, "commit", "-q", "-am", "Unreviewed")
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:feature")
	unmerged := remote.Git(remote.Clone, "rev-parse", "HEAD")
	remote.Git(remote.Clone, "checkout", "-q", branch)
	cache := gitrepo.New(gitrepo.Options{URL: remote.Bare, Dir: filepath.Join(t.TempDir(), "cache.git")})
	if _, err := starter.Start(ctx, c, cfg, cache, starter.Target{Commit: unmerged}); err == nil ||
		!strings.Contains(err.Error(), "is not on branch "+branch) {
		t.Errorf("start of an unmerged commit: err = %v, want refused naming branch %s", err, branch)
	}
	idU := contract.ChangeWorkflowID(branch, unmerged)
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: idU, TaskQueue: cfg.Temporal.TaskQueue},
		contract.ChangeWorkflowName, workflows.ChangeInput{Branch: branch, Commit: unmerged}); err != nil {
		t.Fatal(err)
	}
	if run := waitState(t, c, idU, time.Minute, contract.StateFailed, contract.StateSucceeded); run.State != contract.StateFailed ||
		!strings.Contains(run.Status.Error+run.Status.Detail, "is not on branch "+branch) {
		t.Errorf("run of an unmerged commit = %s (%s / %s), want failed naming the branch", run.State, run.Status.Error, run.Status.Detail)
	}

	// A drift heal started through Temporal with a forged grant naming
	// the unmerged commit as the stack's last good state: the activities
	// check the commit against git, not against the run's input.
	forged := "drift/gate-a/forged"
	if _, err := c.SignalWithStartWorkflow(ctx, forged, contract.GrantSignal,
		contract.Grant{Stack: "gate-a", LastGood: &contract.Deployed{Commit: unmerged}},
		client.StartWorkflowOptions{TaskQueue: cfg.Temporal.TaskQueue}, contract.DriftWorkflowName,
		workflows.DriftInput{Stack: "gate-a", Policy: config.DriftHeal}); err != nil {
		t.Fatal(err)
	}
	if run := waitState(t, c, forged, time.Minute, contract.StateFailed, contract.StateDriftHealed, contract.StateDriftFound, contract.StateAwaitingApproval); run.State != contract.StateFailed ||
		!strings.Contains(run.Status.Error+run.Status.Detail, "is not on branch "+branch) {
		t.Errorf("drift run with a forged last good state = %s (%s / %s), want failed naming the branch", run.State, run.Status.Error, run.Status.Detail)
	}
	recordHistory(t, c, forged, "drift_heal_forged_grant.json")
	if got, _ := os.ReadFile(outA); strings.Contains(string(got), "evil") {
		t.Fatal("the unmerged commit was deployed")
	}

	// The approvers decide: both changes deploy.
	for _, id := range []string{idA, idB} {
		if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "ok")); err != nil {
			t.Fatalf("approval of %s by bob: %v", id, err)
		}
	}
	for _, id := range []string{idA, idB} {
		if run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded ||
			run.Status.Decision.User != "bob" || run.Status.Decision.Method != gate.MethodSSH {
			t.Fatalf("%s ended %s decided by %+v", id, run.State, run.Status.Decision)
		}
	}
	if got, _ := os.ReadFile(outA); string(got) != "v2" {
		t.Errorf("a = %q, want v2", got)
	}
	recordHistory(t, c, idA, "change_signed_decisions.json")
}
