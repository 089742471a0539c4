package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/policy"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/worker"
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

// policyRepo is a remote whose first commit holds the site stack, which
// writes the file out, and one policy file.
func policyRepo(t *testing.T, branch, path, policy string) (*gittest.Remote, string) {
	t.Helper()
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	files := siteProject("stacks/site", out, "v1")
	files[path] = policy
	remote.Commit("Add the site stack and its policies", files)
	return remote, out
}

// serve commits the site's content.
func serve(remote *gittest.Remote, out, msg, content string) string {
	return remote.Commit(msg, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"})
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
	// A second page whose content is a secret: policies see it masked.
	files["stacks/site/Pulumi.yaml"] = siteProgram(nil, fileResource("page", "${outFile}", "${content}"),
		fileResource("secretpage", out+".secret", "fn::secret: s3cr3t-page-value"))
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
		b, _ := os.ReadFile(activities.InputPath(cfg.DataDir, id, "site-policy"))
		t.Fatalf("run is %s (%s), want policy-denied\n%s", run.State, run.Error, b)
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
	// The input document, as the real engine's preview fills it, is kept
	// for `changeops policy test --plan`.
	b, err := os.ReadFile(activities.InputPath(cfg.DataDir, id, "site-policy"))
	if err != nil {
		t.Fatal(err)
	}
	var doc policy.Input
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Commit.SHA != sha || doc.Commit.Subject != "Say the forbidden word" || doc.Commit.Author.Email != "alice@example.com" ||
		!slices.Contains(doc.Commit.ChangedPaths, "stacks/site/Pulumi.test.yaml") ||
		doc.Stack.Name != "site-policy" || doc.Stack.Stack != "test" || doc.Stack.Branch != branch || doc.Stack.Labels["environment"] != "prod" {
		t.Errorf("input commit and stack = %+v, %+v", doc.Commit, doc.Stack)
	}
	secret := slices.IndexFunc(doc.Steps, func(s policy.Step) bool { return strings.HasSuffix(s.URN, "::secretpage") })
	if secret < 0 || doc.Steps[secret].New["content"] != "[secret]" || strings.Contains(string(b), "s3cr3t-page-value") {
		t.Errorf("the secret page's step = %+v: a secret must reach policies masked as [secret]", doc.Steps)
	}
	i := slices.IndexFunc(doc.Steps, func(s policy.Step) bool { return s.URN == urn })
	if i < 0 || doc.Steps[i].Op != "create" || doc.Steps[i].Type != "changeops:index:File" || doc.Steps[i].Old != nil ||
		doc.Steps[i].New["content"] != "forbidden" || doc.Steps[i].New["path"] != out || !strings.HasPrefix(doc.Steps[i].Provider, "urn:pulumi:test::site::pulumi:providers:changeops::") {
		t.Errorf("input steps = %+v, want the page's create with its inputs and provider", doc.Steps)
	}

	// People develop rules against the recorded plan: `policy test` with
	// a folder of their own, and `policy eval` on the document itself.
	cfgFile := writeConfig(t, cfg)
	mine := filepath.Join(t.TempDir(), "policies")
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "content.rego"), []byte(contentPolicy("forbidden")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := changeops(t, "policy", "test", "--config", cfgFile, "--plan", sha[:8], "--policies", mine)
	if code != 1 || !strings.Contains(stdout, "deny     repo policy content.deny: pages must not say forbidden ("+urn+")") ||
		!strings.Contains(stdout, "site-policy: 1 denied, 1 warnings") || !strings.Contains(stderr, "a policy denies the plan") {
		t.Errorf("policy test = %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = changeopsWithInput(t, string(b), "policy", "eval", "--config", cfgFile, "--policies", mine, "--json")
	if code != 1 || !strings.Contains(stdout, `"rule":"content.deny"`) {
		t.Errorf("policy eval --json = %d\n%s\n%s", code, stdout, stderr)
	}
	if err := os.WriteFile(filepath.Join(mine, "content.rego"), []byte(contentPolicy("banned")), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr = changeops(t, "policy", "test", "--config", cfgFile, "--plan", id, "--policies", mine); code != 0 ||
		!strings.Contains(stdout, "site-policy: 0 denied") {
		t.Errorf("policy test with the rule relaxed = %d\n%s\n%s", code, stdout, stderr)
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

// A policy's require routes approval by what the plan does: a plan that
// writes a page needs two approvers from group dba on top of the stack's
// own, four eyes holds for each, approvals accumulate, and someone outside
// the group hears which group the run still needs.
func TestPolicyRequiresApprovalsFromAGroup(t *testing.T) {
	const branch = "e2e-policy-require"
	remote, out := policyRepo(t, branch, "policies/pages.rego", `package changeops.pages

require contains {"group": "dba", "count": 2, "msg": "writes a page"} if {
	some s in input.steps
	s.type == "changeops:index:File"
}
`)

	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-require", Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob", "mallory"},
	})
	cfg.Groups = []config.Group{{Name: "dba", Members: []string{"alice", "carol", "dave"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	slack := slackWorkspace(t, cfg)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	sha := serve(remote, out, "Serve v2", "v2")
	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, 2*time.Minute, contract.StateAwaitingApproval, contract.StateFailed)
	if run.State != contract.StateAwaitingApproval {
		t.Fatalf("run is %s (%s)", run.State, run.Error)
	}
	reqs := run.Status.Approval.Requirements
	if len(reqs) != 2 || reqs[1].Who != "group dba" || reqs[1].Count != 2 || !strings.Contains(reqs[1].Why, "repo policy pages.require of stack site-require: writes a page") {
		t.Fatalf("requirements = %+v, want the stack's approvers and 2 from group dba", reqs)
	}
	th := slack.waitThread(t, sha[:7], contract.StateAwaitingApproval, "received", "plan ready", "Waiting for a decision")
	if !strings.Contains(th[2].Blocks, "needs 2 from group dba") {
		t.Errorf("the approval message does not say the group is needed: %s", th[2].Blocks)
	}

	ctx := context.Background()
	decide := func(who string) error {
		_, err := starter.Decide(ctx, c, id, signedBy(who, true, "ok"))
		return err
	}
	if err := decide("mallory"); err != nil {
		t.Fatalf("mallory, a stack approver: %v", err)
	}
	for who, want := range map[string]string{
		"bob":     "bob may not approve change " + sha[:7] + ": it still needs 2 from group dba",
		"mallory": "mallory already approved",
		// alice is in dba, but she wrote the commit: four eyes.
		"alice": "alice is linked to the author of commit " + sha[:7],
	} {
		if err := decide(who); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("approval by %s: %v; want a refusal saying %q", who, err, want)
		}
	}
	if _, status, _ := changeops(t, "status", sha[:8]); !strings.Contains(status, "2 from group dba (repo policy pages.require") ||
		!strings.Contains(status, "mallory ok") {
		t.Errorf("changeops status does not show what is needed and who approved:\n%s", status)
	}
	if err := decide("carol"); err != nil {
		t.Fatalf("carol, of dba: %v", err)
	}
	if run = waitState(t, c, id, time.Minute, contract.StateAwaitingApproval); len(run.Status.Approvals) != 2 || run.Status.Decision != nil {
		t.Fatalf("after two approvals: approvals %+v, decision %+v; want the run still waiting for dba", run.Status.Approvals, run.Status.Decision)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the page was written before every requirement was met")
	}
	if err := decide("dave"); err != nil {
		t.Fatalf("dave, of dba: %v", err)
	}
	run = waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v2" {
		t.Fatalf("deployed file = %q, %v; want v2", got, err)
	}
	slack.waitThread(t, sha[:7], contract.StateSucceeded, "received", "plan ready", "Approved* by mallory, carol, dave",
		"approved by mallory", "approved by carol", "approved by mallory, carol, dave", "applying", "applied", contract.StateSucceeded)
	_, audit, _ := changeops(t, "audit", "--stack", "site-require")
	for _, want := range []string{`"approvals":["mallory","carol","dave"]`, `"policy":{"digest":"`, `"rule":"pages.require"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit record does not hold %s:\n%s", want, audit)
		}
	}
	recordHistory(t, c, id, "change_policy_approvals.json")
}

// The organisation's policies win: a repository policy that empties its
// deny and excuses every resource does not lift the organisation's deny;
// and a broken organisation policy stops the worker at start-up rather
// than failing every run.
func TestOrganisationPoliciesWin(t *testing.T) {
	const branch = "e2e-policy-org"
	remote, out := policyRepo(t, branch, "policies/weaken.rego", "package changeops\n\nexempt contains s.urn if some s in input.steps\n\ndeny := set()\n")

	org := t.TempDir()
	write := func(src string) {
		if err := os.WriteFile(filepath.Join(org, "content.rego"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package changeops\n\nexempt contains \"nothing\"\n\ndeny contains {\"msg\": \"no forbidden pages\", \"resource\": s.urn} if {\n\tsome s in input.steps\n\tnot exempt[s.urn]\n\ts.new.content == \"forbidden\"\n}\n")
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-org", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
	})
	cfg.Policy.Org = []string{org}
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	sha := serve(remote, out, "Say the forbidden word", "forbidden")
	run := waitState(t, c, contract.ChangeWorkflowID(branch, sha), 2*time.Minute, contract.StatePolicyDenied, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StatePolicyDenied || !strings.Contains(run.Detail, "org policy deny: no forbidden pages") {
		t.Fatalf("run is %s (%s %s), want denied by the organisation's policy", run.State, run.Detail, run.Error)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the page was written: an auto stack applied a plan the organisation denies")
	}

	write("package changeops\n\ndeny contains msg if {\n\tmsg := \n}\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg.Temporal.TaskQueue += "-broken"
	if w, err := worker.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		w.Stop()
		t.Fatal("a worker started with a broken organisation policy")
	} else if !strings.Contains(err.Error(), "policy.org") || !strings.Contains(err.Error(), "org:content.rego:5") {
		t.Fatalf("start = %v, want the file and line of the broken policy", err)
	}
}

// A require naming a Slack user group, decided with the buttons: a stack
// approver who is also in the group counts toward both (the Slack app
// vouches for the group), someone in neither hears the group is missing,
// and the second member completes it.
func TestPolicyRequiresASlackGroupThroughTheButtons(t *testing.T) {
	const branch = "e2e-policy-slack"
	remote, out := policyRepo(t, branch, "policies/pages.rego", "package changeops.pages\n\nrequire contains {\"group\": \"S0DBA\", \"count\": 2} if some s in input.steps\n")
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-policy-slack", Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"U0BOB", "U0CAROL"},
	})
	ws := slackWorkspace(t, cfg)
	ws.groups["S0DBA"] = []string{"U0CAROL", "U0ERIN"}
	for _, u := range []string{"U0BOB", "U0CAROL", "U0ERIN", "U0MALLORY"} {
		ws.emails[u] = strings.ToLower(u[2:]) + "@example.com"
	}
	w := startWorkerFull(t, cfg)
	c := w.Client()
	endpoint := "http://" + w.Addr() + "/slack/interactions"
	waitWatching(t, c, branch)

	sha := serve(remote, out, "Serve v2", "v2")
	id := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, 2*time.Minute, contract.StateAwaitingApproval)
	th := ws.waitThread(t, sha[:7], contract.StateAwaitingApproval, "received", "plan ready", "Waiting for a decision on "+sha[:7])
	button := buttonValue(t, th[2].Blocks).Value()
	click := func(user, path string) string {
		if code := ws.send(t, endpoint, approveClick(user, button, path)); code != http.StatusOK {
			t.Fatalf("click by %s answered %d", user, code)
		}
		return ws.replyTo(t, path).Text
	}

	click("U0CAROL", "/response/carol")
	run := waitFor2(t, c, id, func(r starter.Run) bool { return len(r.Status.Approvals) == 1 })
	if a := run.Status.Approvals[0]; a.Via != "S0DBA" || len(a.Counts) != 2 {
		t.Fatalf("carol's approval = %+v, want it to count for the stack and through group S0DBA", a)
	}
	if reply := click("U0MALLORY", "/response/mallory"); !strings.Contains(reply, "it still needs 1 from group S0DBA") {
		t.Errorf("mallory's click: %q, want the missing group named", reply)
	}
	click("U0ERIN", "/response/erin")
	run = waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded || len(run.Status.Approvals) != 2 {
		t.Fatalf("run ended %s (%s) with approvals %+v; want it applied on carol's and erin's", run.State, run.Error, run.Status.Approvals)
	}
}

// waitFor2 waits until the run's status satisfies ok.
func waitFor2(t *testing.T, c client.Client, id string, ok func(starter.Run) bool) starter.Run {
	t.Helper()
	var run starter.Run
	waitFor(t, time.Minute, "the run's status", func() (bool, string) {
		var err error
		if run, err = starter.Status(context.Background(), c, id); err != nil {
			return false, err.Error()
		}
		return ok(run), fmt.Sprintf("%s, approvals %+v", run.State, run.Status.Approvals)
	})
	return run
}
