package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// contentPolicy denies a page whose content says word, and warns about a
// commit without a Ticket trailer.
func contentPolicy(word string) string {
	return `package changeops.content

deny contains {"msg": "pages must not say ` + word + `", "resource": s.urn} if {
	some s in input.steps
	s.type == "changeops:index:File"
	contains(s.new.content, "` + word + `")
}

warn contains "no Ticket trailer: say which ticket this change is for" if not input.commit.trailers.Ticket
`
}

// Policies on the real engine's plans: a deny stops the run before anyone
// is asked and nothing is applied; a warning reaches status and Slack; a
// broken policy fails the run closed with its file and line; a commit
// that changes a policy is judged by its own version of it.
func TestPoliciesJudgeEachPlan(t *testing.T) {
	const branch = "e2e-policy"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	files := siteProject("stacks/site", out, "v1")
	files["policies/content.rego"] = contentPolicy("forbidden")
	remote.Commit("Add the site stack and its policies", files)

	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-policy", Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
		Labels: map[string]string{"environment": "prod"},
	})
	slack := slackWorkspace(t, cfg)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	settings := func(content string) string {
		return "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"
	}

	// 1. A deny on the page's content: policy-denied, nobody asked,
	// nothing applied, the rule and the resource named everywhere.
	sha := remote.Commit("Say the forbidden word", map[string]string{"stacks/site/Pulumi.test.yaml": settings("forbidden")})
	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, 2*time.Minute, contract.StatePolicyDenied, contract.StateAwaitingApproval, contract.StateFailed)
	if run.State != contract.StatePolicyDenied {
		t.Fatalf("run is %s (%s), want policy-denied", run.State, run.Error)
	}
	const urn = "urn:pulumi:test::site::changeops:index:File::page"
	for _, want := range []string{"stack site-policy", "repo policy content.deny", "pages must not say forbidden", urn} {
		if !strings.Contains(run.Detail, want) {
			t.Errorf("the run's reason %q does not name %q", run.Detail, want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the page was written: a denied plan was applied")
	}
	p := run.Status.Plans
	if len(p) != 1 || p[0].Policy == nil || len(p[0].Policy.Deny) != 1 || p[0].Policy.Deny[0].Resource != urn ||
		len(p[0].Policy.Warn) != 1 || len(p[0].Policy.Digest) != 64 {
		t.Fatalf("plans = %+v, want the deny, the warning and the policy set's digest in the status", p)
	}
	digest := p[0].Policy.Digest
	th := slack.waitThread(t, sha[:7], contract.StatePolicyDenied, "received", "plan ready", contract.StatePolicyDenied)
	for _, want := range []string{"content.deny", urn, "no Ticket trailer", digest[:12]} {
		if !strings.Contains(th[1].Blocks, want) {
			t.Errorf("the plan's Slack message does not show %q: %s", want, th[1].Blocks)
		}
	}
	if !strings.Contains(th[2].Blocks, "content.deny") {
		t.Errorf("the last Slack message does not say which rule denied: %s", th[2].Blocks)
	}
	_, status, _ := changeops(t, "status", sha[:8])
	for _, want := range []string{"policy-denied", "denied", "content.deny", "warning", "no Ticket trailer", digest[:12]} {
		if !strings.Contains(status, want) {
			t.Errorf("changeops status does not show %q:\n%s", want, status)
		}
	}
	// The input document is kept for `changeops policy test --plan`.
	if b, err := os.ReadFile(activities.InputPath(cfg.DataDir, id, "site-policy")); err != nil ||
		!strings.Contains(string(b), `"environment": "prod"`) || !strings.Contains(string(b), urn) {
		t.Errorf("kept input: %v\n%s", err, b)
	}

	// 2. A policy that does not parse: the run fails closed, naming the
	// file and the line, without retrying and without asking anyone.
	sha = remote.Commit("Break the policy", map[string]string{
		"stacks/site/Pulumi.test.yaml": settings("v3"),
		"policies/content.rego":        "package changeops.content\n\ndeny contains msg if {\n\tmsg := \n}\n",
	})
	id = contract.ChangeWorkflowID(branch, sha)
	run = waitState(t, c, id, 2*time.Minute, contract.StateFailed, contract.StateAwaitingApproval)
	if run.State != contract.StateFailed || !strings.Contains(run.Error, "policies/content.rego:5") ||
		!strings.Contains(run.Error, "fix the policy") {
		t.Fatalf("run is %s: %q; want failed, naming policies/content.rego:5", run.State, run.Error)
	}
	if n := countActivities(t, c, id, "Preview"); n != 1 {
		t.Errorf("preview attempted %d times, want 1: a broken policy is not retried", n)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the page was written under a broken policy")
	}

	// 3. A commit that changes the policy is judged by its own version:
	// the word the old policy forbade is allowed by the new one, and the
	// Ticket trailer silences the warning. The run asks for approval.
	sha = remote.Commit("Allow the word again\n\nTicket: OPS-12", map[string]string{
		"stacks/site/Pulumi.test.yaml": settings("forbidden"),
		"policies/content.rego":        contentPolicy("banned"),
	})
	id = contract.ChangeWorkflowID(branch, sha)
	run = waitState(t, c, id, 2*time.Minute, contract.StateAwaitingApproval, contract.StatePolicyDenied, contract.StateFailed)
	if run.State != contract.StateAwaitingApproval {
		t.Fatalf("run is %s (%s %s), want awaiting-approval under the commit's own policy", run.State, run.Detail, run.Error)
	}
	p = run.Status.Plans
	if len(p) != 1 || p[0].Policy == nil || len(p[0].Policy.Deny)+len(p[0].Policy.Warn) != 0 || p[0].Policy.Digest == digest {
		t.Fatalf("plans = %+v, want no result from the new policy set, and a new digest", p)
	}
}
