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
	"github.com/changeops/changeops/starter"
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

// forgeRepo is a repository on the package's Gitea tracked by a worker
// with the forge configured: owner's token is changeops', pusher pushes.
type forgeRepo struct {
	g       *giteatest.Server
	api     *sdk.Client // as the owner, whose token changeops uses
	project string      // owner/name
	remote  *gittest.Remote
	out     string // the file the stack writes
	cfg     *config.Config
	c       client.Client
}

// newForgeRepo creates owner/infra on Gitea, pushed to by pusher (a
// collaborator, like each of collaborators), with the site stack deployed
// by the branch's first run (approved by decide when the stack asks), and
// Gitea's webhook to the worker. prepare, when set, changes the
// configuration before the worker starts.
func newForgeRepo(t *testing.T, branch string, owner, pusher giteatest.User, stack config.Stack, prepare func(*config.Config), decide func(c client.Client, id string), collaborators ...giteatest.User) *forgeRepo {
	t.Helper()
	g := gitea(t)
	api, err := g.Client(owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.CreateRepo(sdk.CreateRepoOption{Name: "infra", DefaultBranch: branch}); err != nil {
		t.Fatal(err)
	}
	write := sdk.AccessModeWrite
	for _, u := range append([]giteatest.User{pusher}, collaborators...) {
		if _, err := api.AddCollaborator(owner.Name, "infra", u.Name, sdk.AddCollaboratorOption{Permission: &write}); err != nil {
			t.Fatal(err)
		}
	}
	r := &forgeRepo{g: g, api: api, project: owner.Name + "/infra", remote: gittest.New(t, branch), out: filepath.Join(t.TempDir(), "site.txt")}
	r.remote.Git(r.remote.Clone, "remote", "set-url", "origin", g.CloneURL(owner.Name, "infra", pusher))
	base := r.remote.Commit("Add the site stack", siteProject("stacks/site", r.out, "v1"))

	stack.Path, stack.Stack = "stacks/site", "test"
	// testConfig validates before the forge is set, which approval:
	// pull-request needs: the policy is put back after.
	policy := stack.Approval
	if policy == config.ApprovalPullRequest {
		stack.Approval, stack.PullRequestApprovals = config.ApprovalManual, max(stack.PullRequestApprovals, 1)
	}
	r.cfg = testConfig(t, g.URL+"/"+r.project+".git", branch, stack)
	r.cfg.Stacks[0].Approval = policy
	// Previews never create a stack: the branch's head deploys first.
	r.cfg.Repo.Initial = config.InitialDeploy
	r.cfg.Repo.Forge = &config.Forge{Kind: config.ForgeGitea, URL: g.URL, Project: r.project, TokenEnv: "E2E_GITEA_TOKEN"}
	r.cfg.Secrets.ForgeTokens = map[string]string{"": owner.Token}
	r.cfg.Secrets.GitUsername, r.cfg.Secrets.GitPassword = owner.Name, owner.Password
	r.cfg.Webhooks.GiteaSecretEnv, r.cfg.Secrets.GiteaSecret = "E2E_GITEA_HOOK", "hook-secret"
	if prepare != nil {
		prepare(r.cfg)
	}
	if err := r.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := startWorkerFull(t, r.cfg)
	r.c = w.Client()
	id := contract.ChangeWorkflowID(branch, base)
	if decide != nil {
		waitState(t, r.c, id, 2*time.Minute, contract.StateAwaitingApproval)
		decide(r.c, id)
	}
	if run := waitState(t, r.c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("initial deploy ended %s: %s", run.State, run.Error)
	}
	// Gitea itself delivers the webhooks, signed, to the worker.
	if _, _, err := api.CreateRepoHook(owner.Name, "infra", sdk.CreateHookOption{
		Type: sdk.HookTypeGitea, Active: true, Events: []string{"pull_request", "pull_request_sync"},
		Config: map[string]string{"url": "http://" + w.Addr() + "/webhooks/gitea", "content_type": "json", "secret": "hook-secret"},
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *forgeRepo) owner() string { return strings.Split(r.project, "/")[0] }

// stackYAML is the stack's configuration serving content.
func (r *forgeRepo) stackYAML(content string) map[string]string {
	return map[string]string{"stacks/site/Pulumi.test.yaml": fmt.Sprintf("config:\n  site:outFile: %s\n  site:content: %s\n", r.out, content)}
}

// push commits files and pushes them to branch feature of remote.
func (r *forgeRepo) push(remote, msg string, files map[string]string) string {
	r.remote.Write(files)
	r.remote.Git(r.remote.Clone, "add", "-A")
	r.remote.Git(r.remote.Clone, "commit", "-q", "-m", msg)
	r.remote.Git(r.remote.Clone, "push", "-q", "-f", remote, "HEAD:feature")
	return r.remote.Git(r.remote.Clone, "rev-parse", "HEAD")
}

// feature starts branch feature afresh from the tracked branch's head.
func (r *forgeRepo) feature() {
	r.remote.Git(r.remote.Clone, "fetch", "-q", "origin")
	r.remote.Git(r.remote.Clone, "checkout", "-q", "-B", "feature", "origin/"+r.remote.Branch)
}

// hook turns Gitea's webhook on or off.
func (r *forgeRepo) hook(t *testing.T, active bool) {
	t.Helper()
	hooks, _, err := r.api.ListRepoHooks(r.owner(), "infra", sdk.ListHooksOptions{})
	if err != nil || len(hooks) != 1 {
		t.Fatalf("hooks = %d, %v", len(hooks), err)
	}
	if _, err := r.api.EditRepoHook(r.owner(), "infra", hooks[0].ID, sdk.EditHookOption{Active: &active}); err != nil {
		t.Fatal(err)
	}
}

// A pull request on a real Gitea is previewed at its merge with the
// branch: a status per stack and one comment; a second push re-plans into
// the same comment and statuses on the new head; nothing is applied; a pull
// request from a fork gets a note and no preview; closing one ends its
// preview; the run of the merge says it is as previewed, or what differs.
func TestPullRequestPreviewOnGitea(t *testing.T) {
	const branch = "e2e-pulls"
	g := gitea(t)
	ops, _ := giteaUser(t, g, "ops", true) // owns the repository; changeops' token
	alice, aliceAPI := giteaUser(t, g, "alice", false)
	mallory, malloryAPI := giteaUser(t, g, "mallory", false)
	var ws *workspace
	r := newForgeRepo(t, branch, ops, alice, config.Stack{Name: "site-pr", Approval: config.ApprovalAuto},
		func(cfg *config.Config) { ws = slackWorkspace(t, cfg) }, nil)
	opsAPI, remote, c, out, push, stackYAML := r.api, r.remote, r.c, r.out, r.push, r.stackYAML

	remote.Git(remote.Clone, "checkout", "-q", "-b", "feature")
	head1 := push("origin", "Serve v2", stackYAML("v2"))
	pr, _, err := aliceAPI.CreatePullRequest("ops", "infra", sdk.CreatePullRequestOption{Head: "feature", Base: branch, Title: "Serve v2"})
	if err != nil {
		t.Fatal(err)
	}
	status := r.waitStatus(t, head1, "changeops/site-pr")
	if status.State != sdk.StatusSuccess || status.Description != "+0 ~1 -0" {
		t.Fatalf("status of %s = %s %q, want success +0 ~1 -0", head1[:7], status.State, status.Description)
	}
	first := r.waitComment(t, pr.Index, head1[:7])
	// The same plan in the pull request's Slack thread.
	waitFor(t, 30*time.Second, "the preview in Slack", func() (bool, string) {
		parent, ok := ws.parentOf(head1[:7])
		if !ok {
			return false, fmt.Sprintf("no parent message; channel: %v", ws.parents())
		}
		if !strings.Contains(parent.Text, fmt.Sprintf("Pull request #%d", pr.Index)) {
			return false, parent.Text
		}
		msgs := ws.thread(parent.TS)
		return len(msgs) > 0 && strings.Contains(msgs[len(msgs)-1].Text, head1[:7]), fmt.Sprintf("thread %v", msgs)
	})
	if !strings.Contains(first.Body, "| site-pr | +0 ~1 -0 |") || !strings.Contains(first.Body, `"v2"`) {
		t.Fatalf("comment lacks the stack's plan and its diff:\n%s", first.Body)
	}

	// A second push: a new preview, in the same comment, on the new head.
	head2 := push("origin", "Serve v3 instead", stackYAML("v3"))
	if status := r.waitStatus(t, head2, "changeops/site-pr"); status.State != sdk.StatusSuccess {
		t.Fatalf("status of %s = %s %q, want success", head2[:7], status.State, status.Description)
	}
	second := r.waitComment(t, pr.Index, head2[:7])
	if second.ID != first.ID {
		t.Fatalf("the second preview posted comment %d, want comment %d updated in place", second.ID, first.ID)
	}

	// A program that does not compile: a failure status with Pulumi's
	// error, and the comment says so; the next push previews again.
	broken := push("origin", "Use a resource type that does not exist", map[string]string{"stacks/site/Pulumi.yaml": siteProgram(nil,
		"  page:\n    type: changeops:index:Nope\n    properties:\n      path: /tmp/x\n")})
	if status := r.waitStatus(t, broken, "changeops/site-pr"); status.State != sdk.StatusFailure || !strings.Contains(status.Description, "Nope") {
		t.Fatalf("status of the broken program = %s %q, want a failure naming the type", status.State, status.Description)
	}
	if c := r.waitComment(t, pr.Index, broken[:7]); !strings.Contains(c.Body, "| site-pr | failed: ") {
		t.Fatalf("comment on the broken program:\n%s", c.Body)
	}
	remote.Git(remote.Clone, "revert", "--no-edit", "HEAD")
	remote.Git(remote.Clone, "push", "-q", "origin", "HEAD:feature")
	head2 = remote.Git(remote.Clone, "rev-parse", "HEAD")
	if status := r.waitStatus(t, head2, "changeops/site-pr"); status.State != sdk.StatusSuccess {
		t.Fatalf("status after the fix = %s %q, want success", status.State, status.Description)
	}
	// The status is posted by the stack's preview activity; the workflow
	// records the preview when the activity returns.
	waitFor(t, 30*time.Second, "the preview workflow recording the fix", func() (bool, string) {
		var st workflows.PreviewStatus
		if v, err := c.QueryWorkflow(t.Context(), contract.PreviewID(r.project, int(pr.Index)), "", contract.PreviewQuery); err != nil {
			return false, err.Error()
		} else if err := v.Get(&st); err != nil {
			return false, err.Error()
		}
		return st.State == workflows.PreviewPreviewed && st.Plan.Head == head2 && len(st.Stacks) == 1 && st.Stacks[0].Steps != "" && st.Previews >= 2,
			fmt.Sprintf("%+v", st)
	})
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
	note := r.waitComment(t, forkPR.Index, "forks")
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
	waitClosed(t, c, contract.PreviewID(r.project, int(forkPR.Index)))

	// Merged: the change run plans what reviewers saw on the pull request,
	// and says so; merging closed the pull request, which ends its preview.
	merged := r.merge(t, pr.Index)
	run := waitState(t, c, contract.ChangeWorkflowID(branch, merged), 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run of the merge ended %s: %s", run.State, run.Error)
	}
	if p := run.Status.Previewed; p == nil || !p.Same || p.Number != int(pr.Index) {
		t.Fatalf("run of the merge compared with the preview = %+v, want the same as #%d", p, pr.Index)
	}
	recordHistory(t, c, contract.ChangeWorkflowID(branch, merged), "change_compared_with_preview.json")
	waitClosed(t, c, contract.PreviewID(r.project, int(pr.Index)))

	// A push whose webhook is lost: the preview shows the older head, and
	// the run of the merge says what differs.
	r.feature()
	head3 := push("origin", "Serve v4", stackYAML("v4"))
	late, _, err := aliceAPI.CreatePullRequest("ops", "infra", sdk.CreatePullRequestOption{Head: "feature", Base: branch, Title: "Serve v4"})
	if err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, head3, "changeops/site-pr")
	r.waitComment(t, late.Index, head3[:7])
	r.hook(t, false)
	push("origin", "Serve v5 after all", stackYAML("v5"))
	merged = r.merge(t, late.Index)
	run = waitState(t, c, contract.ChangeWorkflowID(branch, merged), 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if p := run.Status.Previewed; p == nil || p.Same || p.Number != int(late.Index) || len(p.Differences) != 1 || !strings.Contains(p.Differences[0], "site-pr: previewed +0 ~1 -0") {
		t.Fatalf("run of a merge whose last push was not previewed compared = %+v, want a difference in site-pr", p)
	}
}

// merge merges a pull request on the forge and returns the merge
// commit.
func (r *forgeRepo) merge(t *testing.T, number int64) string {
	t.Helper()
	if _, _, err := r.api.MergePullRequest(r.owner(), "infra", number, sdk.MergePullRequestOption{Style: sdk.MergeStyleMerge}); err != nil {
		t.Fatal(err)
	}
	pr, _, err := r.api.GetPullRequest(r.owner(), "infra", number)
	if err != nil || pr.MergedCommitID == nil {
		t.Fatalf("pull request #%d after its merge: %+v, %v", number, pr, err)
	}
	return *pr.MergedCommitID
}

// waitStatus waits for a status of context on sha that is not pending.
func (r *forgeRepo) waitStatus(t *testing.T, sha, context string) *sdk.Status {
	t.Helper()
	var got *sdk.Status
	waitFor(t, 2*time.Minute, "status "+context+" on "+sha[:7], func() (bool, string) {
		statuses, _, err := r.api.ListStatuses(r.owner(), "infra", sha, sdk.ListStatusesOption{})
		if err != nil {
			return false, err.Error()
		}
		// The newest is the highest ID: Gitea orders the list by time in
		// seconds, and a pending and its result often share a second.
		got = nil
		for _, s := range statuses {
			if s.Context == context && (got == nil || s.ID > got.ID) {
				got = s
			}
		}
		if got == nil {
			return false, fmt.Sprintf("%d statuses, none of %s", len(statuses), context)
		}
		return got.State != sdk.StatusPending, string(got.State) + " " + got.Description
	})
	return got
}

// waitComment waits until the pull request has exactly one comment of
// changeops' (the marker) and it contains want.
func (r *forgeRepo) waitComment(t *testing.T, number int64, want string) *sdk.Comment {
	t.Helper()
	var got *sdk.Comment
	waitFor(t, 2*time.Minute, fmt.Sprintf("comment on #%d with %q", number, want), func() (bool, string) {
		comments, _, err := r.api.ListIssueComments(r.owner(), "infra", number, sdk.ListIssueCommentOptions{})
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

// Under approval: pull-request an allowed reviewer's approval on the forge
// decides the run of the merge when it plans what was previewed: it
// applies without a decision here, recording the pull request and the
// reviewer. Four eyes refuses the approval of whoever wrote the commits,
// and a merge whose plan differs from the preview asks as a manual stack
// does.
func TestPullRequestApprovalsDecideOnGitea(t *testing.T) {
	const branch = "e2e-pull-approvals"
	g := gitea(t)
	owner, _ := giteaUser(t, g, "pr-ops", true)
	alice, aliceAPI := giteaUser(t, g, "pr-alice", false)
	bob, bobAPI := giteaUser(t, g, "pr-bob", false)
	carol, carolAPI := giteaUser(t, g, "pr-carol", false)
	ctx := t.Context()
	decide := func(c client.Client, id string) {
		if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "approved here")); err != nil {
			t.Fatalf("approve %s: %v", id, err)
		}
	}
	r := newForgeRepo(t, branch, owner, alice, config.Stack{
		Name: "site-reviewed", Approval: config.ApprovalPullRequest, Approvers: []string{"alice", "bob", "carol"}, FourEyes: true,
	}, nil, decide, bob, carol)
	approve := func(api *sdk.Client, number int64, head string) {
		t.Helper()
		if _, _, err := api.CreatePullReview(r.owner(), "infra", number, sdk.CreatePullReviewOptions{State: sdk.ReviewStateApproved, Body: "lgtm", CommitID: head}); err != nil {
			t.Fatalf("approve #%d: %v", number, err)
		}
	}
	open := func(api *sdk.Client, title string) int64 {
		t.Helper()
		pr, _, err := api.CreatePullRequest(r.owner(), "infra", sdk.CreatePullRequestOption{Head: "feature", Base: branch, Title: title})
		if err != nil {
			t.Fatal(err)
		}
		return pr.Index
	}

	// bob approves alice's pull request as previewed: no decision here.
	r.feature()
	head := r.push("origin", "Serve v2", r.stackYAML("v2"))
	n := open(aliceAPI, "Serve v2")
	r.waitStatus(t, head, "changeops/site-reviewed")
	approve(bobAPI, n, head)
	id := contract.ChangeWorkflowID(branch, r.merge(t, n))
	run := waitState(t, r.c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateAwaitingApproval)
	if d := run.Status.Decision; run.State != contract.StateSucceeded || d == nil || d.User != "bob" || d.Method != "forge" ||
		!strings.Contains(d.Comment, fmt.Sprintf("#%d", n)) {
		t.Fatalf("run of the approved merge: %s, decision %+v, approvals %+v; want succeeded, decided by bob on #%d", run.State, d, run.Status.PullApprovals, n)
	}
	if got, err := os.ReadFile(r.out); err != nil || string(got) != "v2" {
		t.Fatalf("deployed file = %q, %v; want v2", got, err)
	}
	recordHistory(t, r.c, id, "change_approved_on_pull_request.json")

	// carol opens a pull request of alice's commits, and alice approves
	// it: under four eyes her approval does not count, so the run asks.
	r.feature()
	head = r.push("origin", "Serve v3", r.stackYAML("v3"))
	n = open(carolAPI, "Serve v3")
	r.waitStatus(t, head, "changeops/site-reviewed")
	approve(aliceAPI, n, head)
	id = contract.ChangeWorkflowID(branch, r.merge(t, n))
	run = waitState(t, r.c, id, 2*time.Minute, contract.StateAwaitingApproval, contract.StateSucceeded, contract.StateFailed)
	if p := run.Status.PullApprovals; run.State != contract.StateAwaitingApproval || p == nil || len(p.Approvers) != 0 ||
		len(p.Refused) != 1 || !strings.Contains(p.Refused[0], "alice wrote or merged its commits (email alice@example.com; four eyes)") {
		t.Fatalf("run of a merge approved by its commits' author: %s, approvals %+v; want awaiting approval, alice refused", run.State, run.Status.PullApprovals)
	}
	decide(r.c, id)
	waitState(t, r.c, id, 2*time.Minute, contract.StateSucceeded)

	// bob approves what was previewed, then a push the preview never saw
	// (its webhook lost) is merged: the plan differs, so the run asks.
	r.feature()
	head = r.push("origin", "Serve v4", r.stackYAML("v4"))
	n = open(aliceAPI, "Serve v4")
	r.waitStatus(t, head, "changeops/site-reviewed")
	approve(bobAPI, n, head)
	r.hook(t, false)
	r.push("origin", "Serve v5 after all", r.stackYAML("v5"))
	id = contract.ChangeWorkflowID(branch, r.merge(t, n))
	run = waitState(t, r.c, id, 2*time.Minute, contract.StateAwaitingApproval, contract.StateSucceeded, contract.StateFailed)
	if p := run.Status.Previewed; run.State != contract.StateAwaitingApproval || p == nil || p.Same || run.Status.PullApprovals != nil {
		t.Fatalf("run of a merge that differs from its preview: %s, compared %+v, approvals %+v; want awaiting approval, approvals not read", run.State, p, run.Status.PullApprovals)
	}
}
