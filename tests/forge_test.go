package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "code.gitea.io/sdk/gitea"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/giteatest"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/workflows"
)

// The package's Gitea, started by the first test that needs it.
var (
	giteaOnce sync.Once
	giteaSrv  *giteatest.Server
	giteaErr  error
	giteaDir  string
)

// gitea is the package's real forge, started once, lazily: tests that do
// not need it do not pay for it. TestMain stops it.
func gitea(t *testing.T) *giteatest.Server {
	t.Helper()
	giteaOnce.Do(func() {
		if giteaDir, giteaErr = os.MkdirTemp("", "changeops-gitea-"); giteaErr != nil {
			return
		}
		giteaSrv, giteaErr = giteatest.Start(context.Background(), tools, giteaDir)
	})
	if giteaErr != nil {
		t.Fatalf("start gitea: %v", giteaErr)
	}
	return giteaSrv
}

func stopGitea() {
	if giteaSrv != nil {
		giteaSrv.Stop()
	}
	if giteaDir != "" {
		os.RemoveAll(giteaDir)
	}
}

// giteaUser makes an account on the package's Gitea (named for the test,
// since users live as long as the server) and a client acting as it.
func giteaUser(t *testing.T, g *giteatest.Server, name string, admin bool) (giteatest.User, *sdk.Client) {
	t.Helper()
	u, err := g.CreateUser(t.Context(), name, admin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.Client(u)
	if err != nil {
		t.Fatal(err)
	}
	return u, c
}

// A pull request on a real Gitea is previewed at its merge with the
// branch: a status per stack and one comment; a second push re-plans into
// the same comment and statuses on the new head; nothing is applied; a pull
// request from a fork gets a note and no preview; closing one ends its
// preview.
func TestPullRequestPreviewOnGitea(t *testing.T) {
	const branch = "e2e-pulls"
	g := gitea(t)
	ops, opsAPI := giteaUser(t, g, "ops", true) // owns the repository; changeops' token
	alice, aliceAPI := giteaUser(t, g, "alice", false)
	mallory, malloryAPI := giteaUser(t, g, "mallory", false)
	if _, _, err := opsAPI.CreateRepo(sdk.CreateRepoOption{Name: "infra", DefaultBranch: branch}); err != nil {
		t.Fatal(err)
	}
	write := sdk.AccessModeWrite
	if _, err := opsAPI.AddCollaborator("ops", "infra", "alice", sdk.AddCollaboratorOption{Permission: &write}); err != nil {
		t.Fatal(err)
	}

	remote := gittest.New(t, branch)
	remote.Git(remote.Clone, "remote", "set-url", "origin", g.CloneURL("ops", "infra", alice))
	out := filepath.Join(t.TempDir(), "site.txt")
	base := remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))

	cfg := testConfig(t, g.URL+"/ops/infra.git", branch, config.Stack{
		Name: "site-pr", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
	})
	// Previews never create a stack: the branch's head deploys first.
	cfg.Repo.Initial = config.InitialDeploy
	cfg.Repo.Forge = &config.Forge{Kind: config.ForgeGitea, URL: g.URL, Project: "ops/infra", TokenEnv: "E2E_GITEA_TOKEN"}
	cfg.Secrets.ForgeTokens = map[string]string{"": ops.Token}
	cfg.Secrets.GitUsername, cfg.Secrets.GitPassword = ops.Name, ops.Password
	cfg.Webhooks.GiteaSecretEnv, cfg.Secrets.GiteaSecret = "E2E_GITEA_HOOK", "hook-secret"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorkerFull(t, cfg)
	c := w.Client()
	if run := waitState(t, c, contract.ChangeWorkflowID(branch, base), 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("initial deploy ended %s: %s", run.State, run.Error)
	}
	// Gitea itself delivers the webhooks, signed, to the worker.
	if _, _, err := opsAPI.CreateRepoHook("ops", "infra", sdk.CreateHookOption{
		Type: sdk.HookTypeGitea, Active: true, Events: []string{"pull_request", "pull_request_sync"},
		Config: map[string]string{"url": "http://" + w.Addr() + "/webhooks/gitea", "content_type": "json", "secret": "hook-secret"},
	}); err != nil {
		t.Fatal(err)
	}

	stackYAML := func(content string) map[string]string {
		return map[string]string{"stacks/site/Pulumi.test.yaml": fmt.Sprintf("config:\n  site:outFile: %s\n  site:content: %s\n", out, content)}
	}
	push := func(ref, msg string, files map[string]string) string {
		remote.Write(files)
		remote.Git(remote.Clone, "add", "-A")
		remote.Git(remote.Clone, "commit", "-q", "-m", msg)
		remote.Git(remote.Clone, "push", "-q", "-f", ref, "HEAD:feature")
		return remote.Git(remote.Clone, "rev-parse", "HEAD")
	}

	remote.Git(remote.Clone, "checkout", "-q", "-b", "feature")
	head1 := push("origin", "Serve v2", stackYAML("v2"))
	pr, _, err := aliceAPI.CreatePullRequest("ops", "infra", sdk.CreatePullRequestOption{Head: "feature", Base: branch, Title: "Serve v2"})
	if err != nil {
		t.Fatal(err)
	}
	status := waitStatus(t, opsAPI, head1, "changeops/site-pr")
	if status.State != sdk.StatusSuccess || status.Description != "+0 ~1 -0" {
		t.Fatalf("status of %s = %s %q, want success +0 ~1 -0", head1[:7], status.State, status.Description)
	}
	first := waitComment(t, opsAPI, pr.Index, head1[:7])
	if !strings.Contains(first.Body, "| site-pr | +0 ~1 -0 |") || !strings.Contains(first.Body, `"v2"`) {
		t.Fatalf("comment lacks the stack's plan and its diff:\n%s", first.Body)
	}

	// A second push: a new preview, in the same comment, on the new head.
	head2 := push("origin", "Serve v3 instead", stackYAML("v3"))
	if status := waitStatus(t, opsAPI, head2, "changeops/site-pr"); status.State != sdk.StatusSuccess {
		t.Fatalf("status of %s = %s %q, want success", head2[:7], status.State, status.Description)
	}
	second := waitComment(t, opsAPI, pr.Index, head2[:7])
	if second.ID != first.ID {
		t.Fatalf("the second preview posted comment %d, want comment %d updated in place", second.ID, first.ID)
	}
	var st workflows.PreviewStatus
	if v, err := c.QueryWorkflow(t.Context(), contract.PreviewID("", int(pr.Index)), "", contract.PreviewQuery); err != nil {
		t.Fatal(err)
	} else if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	if st.Plan.Head != head2 || len(st.Stacks) != 1 || st.Stacks[0].Steps == "" || st.Previews < 2 {
		t.Fatalf("preview status = %+v, want head %s, one stack with its steps digest, two previews or more", st, head2[:7])
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v1" {
		t.Fatalf("deployed file = %q, %v; want v1: a preview applied something", got, err)
	}

	// A pull request from a fork: a note, no preview.
	if _, _, err := malloryAPI.CreateFork("ops", "infra", sdk.CreateForkOption{}); err != nil {
		t.Fatal(err)
	}
	remote.Git(remote.Clone, "remote", "add", "fork", g.CloneURL("mallory", "infra", mallory))
	forkHead := push("fork", "Serve something else", stackYAML("forked"))
	forkPR, _, err := malloryAPI.CreatePullRequest("ops", "infra", sdk.CreatePullRequestOption{Head: "mallory:feature", Base: branch, Title: "From a fork"})
	if err != nil {
		t.Fatal(err)
	}
	note := waitComment(t, opsAPI, forkPR.Index, "forks")
	if !strings.Contains(note.Body, "does not preview pull requests from forks") {
		t.Fatalf("fork note = %q", note.Body)
	}
	if statuses, _, err := opsAPI.ListStatuses("ops", "infra", forkHead, sdk.ListStatusesOption{}); err != nil || len(statuses) != 0 {
		t.Fatalf("statuses on the fork's head = %d, %v; want none", len(statuses), err)
	}

	// Closing a pull request ends its preview.
	closed := sdk.StateClosed
	if _, _, err := malloryAPI.EditPullRequest("ops", "infra", forkPR.Index, sdk.EditPullRequestOption{State: &closed}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, contract.PreviewID("", int(forkPR.Index)))

	// Merged: the change run plans what reviewers saw on the pull request,
	// and says so; merging closed the pull request, which ends its preview.
	merged := mergePull(t, opsAPI, pr.Index)
	run := waitState(t, c, contract.ChangeWorkflowID(branch, merged), 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run of the merge ended %s: %s", run.State, run.Error)
	}
	if p := run.Status.Previewed; p == nil || !p.Same || p.Number != int(pr.Index) {
		t.Fatalf("run of the merge compared with the preview = %+v, want the same as #%d", p, pr.Index)
	}
	recordHistory(t, c, contract.ChangeWorkflowID(branch, merged), "change_compared_with_preview.json")
	waitClosed(t, c, contract.PreviewID("", int(pr.Index)))

	// A push whose webhook is lost: the preview shows the older head, and
	// the run of the merge says what differs.
	remote.Git(remote.Clone, "fetch", "-q", "origin")
	remote.Git(remote.Clone, "checkout", "-q", "-B", "feature", "origin/"+branch)
	head3 := push("origin", "Serve v4", stackYAML("v4"))
	late, _, err := aliceAPI.CreatePullRequest("ops", "infra", sdk.CreatePullRequestOption{Head: "feature", Base: branch, Title: "Serve v4"})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, opsAPI, head3, "changeops/site-pr")
	waitComment(t, opsAPI, late.Index, head3[:7])
	hooks, _, err := opsAPI.ListRepoHooks("ops", "infra", sdk.ListHooksOptions{})
	if err != nil || len(hooks) != 1 {
		t.Fatalf("hooks = %d, %v", len(hooks), err)
	}
	off := false
	if _, err := opsAPI.EditRepoHook("ops", "infra", hooks[0].ID, sdk.EditHookOption{Active: &off}); err != nil {
		t.Fatal(err)
	}
	push("origin", "Serve v5 after all", stackYAML("v5"))
	merged = mergePull(t, opsAPI, late.Index)
	run = waitState(t, c, contract.ChangeWorkflowID(branch, merged), 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if p := run.Status.Previewed; p == nil || p.Same || p.Number != int(late.Index) || len(p.Differences) != 1 || !strings.Contains(p.Differences[0], "site-pr: previewed +0 ~1 -0") {
		t.Fatalf("run of a merge whose last push was not previewed compared = %+v, want a difference in site-pr", p)
	}
}

// mergePull merges a pull request on the forge and returns the merge
// commit.
func mergePull(t *testing.T, api *sdk.Client, number int64) string {
	t.Helper()
	if _, _, err := api.MergePullRequest("ops", "infra", number, sdk.MergePullRequestOption{Style: sdk.MergeStyleMerge}); err != nil {
		t.Fatal(err)
	}
	pr, _, err := api.GetPullRequest("ops", "infra", number)
	if err != nil || pr.MergedCommitID == nil {
		t.Fatalf("pull request #%d after its merge: %+v, %v", number, pr, err)
	}
	return *pr.MergedCommitID
}

// waitStatus waits for a status of context on sha that is not pending.
func waitStatus(t *testing.T, api *sdk.Client, sha, context string) *sdk.Status {
	t.Helper()
	var got *sdk.Status
	waitFor(t, 2*time.Minute, "status "+context+" on "+sha[:7], func() (bool, string) {
		statuses, _, err := api.ListStatuses("ops", "infra", sha, sdk.ListStatusesOption{})
		if err != nil {
			return false, err.Error()
		}
		for _, s := range statuses { // newest first
			if s.Context == context {
				got = s
				return s.State != sdk.StatusPending, string(s.State) + " " + s.Description
			}
		}
		return false, fmt.Sprintf("%d statuses, none of %s", len(statuses), context)
	})
	return got
}

// waitComment waits until the pull request has exactly one comment of
// changeops' (the marker) and it contains want.
func waitComment(t *testing.T, api *sdk.Client, number int64, want string) *sdk.Comment {
	t.Helper()
	var got *sdk.Comment
	waitFor(t, 2*time.Minute, fmt.Sprintf("comment on #%d with %q", number, want), func() (bool, string) {
		comments, _, err := api.ListIssueComments("ops", "infra", number, sdk.ListIssueCommentOptions{})
		if err != nil {
			return false, err.Error()
		}
		var ours []*sdk.Comment
		for _, c := range comments {
			if strings.HasPrefix(c.Body, contract.PreviewMarker) {
				ours = append(ours, c)
			}
		}
		if len(ours) != 1 {
			return false, fmt.Sprintf("%d comments of changeops'", len(ours))
		}
		got = ours[0]
		return strings.Contains(got.Body, want), got.Body
	})
	return got
}

// waitClosed waits until a workflow has completed.
func waitClosed(t *testing.T, c client.Client, id string) {
	t.Helper()
	waitFor(t, time.Minute, id+" completed", func() (bool, string) {
		d, err := c.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			return false, err.Error()
		}
		s := d.GetWorkflowExecutionInfo().GetStatus()
		return s == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, s.String()
	})
}
