package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// One commit's metadata cannot stop a branch: a 3 MB subject and a 3 KiB
// author email (over Temporal's payload and search attribute limits) are
// bounded before they reach a payload, the run is told, and the commit
// after it deploys as usual.
func TestHugeCommitMetadataDoesNotStopTheBranch(t *testing.T) {
	const branch = "e2e-hostile"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "page.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{Name: "site-hostile", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	msg := filepath.Join(t.TempDir(), "msg")
	subject := strings.Repeat("é big subject ", 3<<20/15)
	if err := os.WriteFile(msg, []byte(subject+"\n\nbody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	email := strings.Repeat("a", 3<<10) + "@example.com"
	remote.Write(map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	remote.Git(remote.Clone, "add", "-A")
	remote.Git(remote.Clone, "commit", "-q", "-F", msg, "--author", "Mallory <"+email+">")
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:"+branch)
	huge := remote.Git(remote.Clone, "rev-parse", "HEAD")
	next := remote.Commit("Serve v3", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v3\n"})

	run := waitState(t, c, contract.ChangeWorkflowID(branch, huge), 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("the run of the huge commit ended %s: %s", run.State, run.Error)
	}
	got := run.Status.Commit
	if len(got.Subject) > 1024 || !strings.HasPrefix(got.Subject, "é big subject") || !utf8.ValidString(got.Subject) {
		t.Errorf("recorded subject: %d bytes, valid UTF-8 %v", len(got.Subject), utf8.ValidString(got.Subject))
	}
	if len(got.AuthorEmail) > 256 || run.Author != got.AuthorEmail {
		t.Errorf("recorded author email: %d bytes; search attribute %d bytes", len(got.AuthorEmail), len(run.Author))
	}
	if run := waitState(t, c, contract.ChangeWorkflowID(branch, next), 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("the next commit's run ended %s: %s", run.State, run.Error)
	}
	if b, _ := os.ReadFile(out); string(b) != "v3" {
		t.Fatalf("page = %q, want v3", b)
	}
}
