package tests

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// syncBuffer is a log sink the worker writes from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Three runs on one stack, one of each ending an auditor cares about
// (succeeded, rejected, rolled back), then everything an operator or an
// auditor reads about them: each search attribute finds its run, the
// status query answers in full, the audit export holds the record (through
// the library and the CLI's CSV), /metrics counts the runs, /readyz
// answers, and the known secrets appear in no log line, Slack message or
// workflow history.
func TestRunsAreTracedAndAudited(t *testing.T) {
	const branch, stack = "e2e-audit", "site-audit"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	// The stack's config pins the image it deploys: an artifact the audit
	// records.
	site := siteProject("stacks/site", out, "v1")
	site["stacks/site/Pulumi.yaml"] = siteProgram([]string{"image"}, fileResource("page", "${outFile}", "${content}"))
	remote.Commit("Add the site stack", site)
	const image = "registry.example.com/site/web:2.0.1"
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: stack, Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
		Verify: []config.Check{{Command: []string{"sh", "-c",
			`test "$(cat "$PULUMI_OUTPUT_PATH")" != broken || { echo upstream unhealthy; exit 3; }`}}},
		VerifyTimeout: config.Duration(4 * time.Second),
	})
	ws := slackWorkspace(t, cfg)
	logs := &syncBuffer{}
	w := startWorkerLogging(t, cfg, logs)
	c := w.Client()
	waitWatching(t, c, branch)
	ctx := context.Background()
	set := func(msg, content string) string {
		return remote.Commit(msg, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n  site:image: " + image + "\n"})
	}
	decide := func(sha string, approve bool) string {
		id := contract.ChangeWorkflowID(branch, sha)
		waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
		if _, err := starter.Decide(ctx, c, id, signedBy("bob", approve, "audited")); err != nil {
			t.Fatalf("decide %s: %v", sha[:7], err)
		}
		return id
	}

	// The rejected change comes first: it stays in git (a rejection does
	// not revert), and the good one after it supersedes it, so the bad
	// one's revert lands exactly on what is deployed.
	rejected := set("Serve v3", "v3")
	rejectedID := decide(rejected, false)
	waitState(t, c, rejectedID, time.Minute, contract.StateRejected)
	good := set("Serve v2", "v2")
	goodID := decide(good, true)
	waitState(t, c, goodID, 2*time.Minute, contract.StateSucceeded)
	bad := set("Break the site", "broken")
	badID := decide(bad, true)
	badRun := waitState(t, c, badID, 3*time.Minute, contract.StateRolledBack, contract.StateRollbackFailed)
	if badRun.State != contract.StateRolledBack || badRun.RevertCommit == "" {
		t.Fatalf("bad change ended %s, revert %q: %s", badRun.State, badRun.RevertCommit, badRun.Error)
	}
	revertID := contract.ChangeWorkflowID(branch, badRun.RevertCommit)
	waitState(t, c, revertID, time.Minute, contract.StateNoOp)

	// Every search attribute finds the run it describes.
	for query, want := range map[string]string{
		fmt.Sprintf("ChangeCommit = '%s'", good):                                                                goodID,
		fmt.Sprintf("ChangeBranch = '%s' AND ChangeState = 'succeeded'", branch):                                goodID,
		fmt.Sprintf("ChangeStacks = '%s' AND ChangeState = 'rejected'", stack):                                  rejectedID,
		"ChangeAuthor = 'alice@example.com' AND ChangeState = 'rolled-back' AND ChangeStacks = '" + stack + "'": badID,
		fmt.Sprintf("ChangeApprover = 'bob' AND ChangeCommit = '%s'", bad):                                      badID,
		fmt.Sprintf("ChangeRevertCommit = '%s'", badRun.RevertCommit):                                           badID,
	} {
		waitFor(t, 15*time.Second, query, func() (bool, string) {
			ids := visible(t, c, query)
			return len(ids) == 1 && ids[0] == want, fmt.Sprint(ids)
		})
	}

	// The status query answers in full.
	run, err := starter.Status(ctx, c, goodID)
	if err != nil {
		t.Fatal(err)
	}
	st := run.Status
	if st == nil || len(st.Plans) != 1 || st.Plans[0].Digest == "" || st.Decision == nil || len(st.Applies) != 1 ||
		len(st.Verifications) != 1 || !st.Verifications[0].Passed || st.Commit.Parent == "" || len(st.Steps) < 5 {
		t.Fatalf("status of the good run is not complete: %+v", st)
	}

	// The audit export.
	recs, err := starter.Audit(ctx, c, starter.Filter{Stack: stack, Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]starter.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	if len(recs) != 4 {
		t.Fatalf("audit holds %d runs of %s, want 4 (good, rejected, bad, its revert)", len(recs), stack)
	}
	g, rj, b := byID[goodID], byID[rejectedID], byID[badID]
	checks := []struct {
		what string
		ok   bool
	}{
		{"good: commit, parent, author", g.Commit == good && g.Parent != "" && g.AuthorEmail == "alice@example.com" && g.AuthorName == "alice"},
		{"good: approver and time", g.Approver == "bob" && !g.DecidedAt.IsZero() && g.Comment == "audited"},
		{"good: plan digest and counts", len(g.Plans) == 1 && len(g.Plans[0].Digest) == 64 && g.Plans[0].Update+g.Plans[0].Create > 0},
		{"good: the image it deployed", len(g.Plans) == 1 && len(g.Plans[0].Artifacts) == 1 && g.Plans[0].Artifacts[0] == "site:image="+image},
		{"good: Pulumi update", len(g.Updates) == 1 && g.Updates[0].Started != "" && g.Updates[0].Create == 2},
		{"good: checks", len(g.Checks) == 1 && g.Checks[0].Passed},
		{"good: steps timed", len(g.Steps) >= 5 && g.Steps[len(g.Steps)-1].State == contract.StateSucceeded},
		{"rejected: who, nothing applied", rj.State == contract.StateRejected && rj.Approver == "bob" && len(rj.Updates) == 0},
		{"rolled back: revert and restore", b.State == contract.StateRolledBack && b.RevertCommit == badRun.RevertCommit &&
			len(b.Restored) == 1 && b.Restored[0] == stack+"@"+good},
		{"rolled back: the failed check", len(b.Checks) > 0 && !b.Checks[0].Passed},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("audit record: %s: good %+v, rejected %+v, bad %+v", ch.what, g, rj, b)
		}
	}
	code, stdout, stderr := changeops(t, "audit", "--address", temporalURL, "--stack", stack, "--since", "1h", "--format", "csv")
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if code != 0 || err != nil || len(rows) != 5 {
		t.Fatalf("changeops audit --format csv = %d, %v, %q (stderr %q); want a header and 4 rows", code, err, stdout, stderr)
	}
	header := strings.Join(rows[0], ",")
	for _, col := range []string{"commit", "approver", "plan_digests", "updates", "revert_commit", "started_at"} {
		if !strings.Contains(header, col) {
			t.Errorf("CSV header %q lacks %s", header, col)
		}
	}
	if !strings.Contains(stdout, badRun.RevertCommit) || !strings.Contains(stdout, stack+"="+g.Plans[0].Digest) || !strings.Contains(stdout, stack+":site:image="+image) {
		t.Errorf("CSV lacks the revert commit or the plan digest:\n%s", stdout)
	}

	// Metrics: the SDK's and the runs', on the worker's listener.
	base := "http://" + w.Addr()
	waitFor(t, 15*time.Second, "run metrics", func() (bool, string) {
		m := get(t, base+"/metrics")
		for _, want := range []string{
			`changeops_runs_finished_total{.*state="succeeded".*} 1`,
			`changeops_runs_finished_total{.*state="rejected".*} 1`,
			`changeops_runs_finished_total{.*state="rolled-back".*} 1`,
			`changeops_runs_finished_total{.*state="no-op".*} 1`,
			`changeops_rollbacks_total{.*outcome="rolled-back".*} 1`,
			`changeops_approval_wait_seconds_count{.*outcome="approved".*} 2`,
			`changeops_approval_wait_seconds_count{.*outcome="rejected".*} 1`,
			`changeops_apply_duration_seconds_count{.*stack="` + stack + `".*} [1-9]`,
			`changeops_verify_duration_seconds_count{.*stack="` + stack + `".*} [1-9]`,
			`temporal_workflow_completed_total{.*workflow_type="ChangeWorkflow".*} 4`,
		} {
			if !regexp.MustCompile(want).MatchString(m) {
				return false, "no line matches " + want + " in:\n" + grepLines(m, "changeops_.*_(total|count)|temporal_workflow_completed")
			}
		}
		return true, ""
	})
	if body := get(t, base+"/readyz"); !strings.Contains(body, "ready") {
		t.Errorf("/readyz = %q", body)
	}

	// No secret anywhere people or the audit log can read.
	secrets := []string{"e2e-passphrase", slackToken, slackSecret}
	if !strings.Contains(logs.String(), goodID) {
		t.Fatal("the worker's log does not mention the run: the leak check would see nothing")
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the worker's log contains the secret %q", s)
		}
	}
	ws.mu.Lock()
	for _, m := range ws.messages {
		for _, s := range secrets {
			if strings.Contains(m.Text+m.Blocks, s) {
				t.Errorf("slack message %q contains the secret %q", m.Text, s)
			}
		}
	}
	ws.mu.Unlock()
	for _, id := range []string{goodID, rejectedID, badID, revertID, contract.WatcherWorkflowID(branch)} {
		if leaked := historyContains(t, c, id, secrets...); leaked != "" {
			t.Errorf("history of %s contains the secret %q", id, leaked)
		}
	}
}

// visible lists the workflow IDs a visibility query finds.
func visible(t *testing.T, c client.Client, query string) []string {
	t.Helper()
	resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
	if err != nil {
		t.Fatalf("visibility query %q: %v", query, err)
	}
	var ids []string
	for _, e := range resp.GetExecutions() {
		ids = append(ids, e.GetExecution().GetWorkflowId())
	}
	return ids
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grepLines keeps the lines of s that match pattern.
func grepLines(s, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
