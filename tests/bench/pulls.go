package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	sdk "code.gitea.io/sdk/gitea"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/giteatest"
	"github.com/changeops/changeops/worker"
	"github.com/changeops/changeops/workflows"
)

// pullFigure prints the pull request figure.
func pullFigure(ctx context.Context, dir, tools, temporal string, count int) error {
	lat, err := pullPreviews(ctx, dir, tools, temporal, count)
	if err != nil {
		return fmt.Errorf("pull request previews: %w", err)
	}
	fmt.Printf("%-34s %9.2fs %10s %7s %8s\n", fmt.Sprintf("PR push → status posted (median/%d)", count), median(lat), "-", "-", "reported")
	return nil
}

// pullPreviews times a pull request's preview on a real Gitea: a push to
// an open pull request (Gitea delivers the signed webhook) → the stack's
// commit status posted as success on the new head, count times. The stack
// has one file resource; the preview merges, previews and posts.
func pullPreviews(ctx context.Context, dir, tools, temporal string, count int) ([]float64, error) {
	dir = filepath.Join(dir, "pulls")
	srv, err := giteatest.Start(ctx, tools, mkdir(dir, "gitea"))
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	owner, err := srv.CreateUser(ctx, "bench", true)
	if err != nil {
		return nil, err
	}
	api, err := srv.Client(owner)
	if err != nil {
		return nil, err
	}
	const branch = "main"
	if _, _, err := api.CreateRepo(sdk.CreateRepoOption{Name: "infra", DefaultBranch: branch}); err != nil {
		return nil, err
	}
	repo := mkdir(dir, "clone")
	out := filepath.Join(dir, "out")
	if err := git(repo, "init", "-q", "-b", branch); err != nil {
		return nil, err
	}
	if err := writeProject(filepath.Join(repo, "stacks", "site"), 1, "bench", out, "v0"); err != nil {
		return nil, err
	}
	if err := git(repo, "remote", "add", "origin", srv.CloneURL("bench", "infra", owner)); err != nil {
		return nil, err
	}
	if err := commitPush(repo, "stack"); err != nil {
		return nil, err
	}
	head, err := gitOut(repo, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}

	data := mkdir(dir, "data")
	cfg := &config.Config{
		Repo: config.Repo{URL: srv.URL + "/bench/infra.git", Branch: branch, PollInterval: config.Duration(time.Second), Initial: config.InitialDeploy,
			Forge: &config.Forge{Kind: config.ForgeGitea, URL: srv.URL, Project: "bench/infra", TokenEnv: "BENCH_GITEA_TOKEN"}},
		Temporal: config.Temporal{Address: temporal, Namespace: "default", TaskQueue: "bench-pulls"},
		Pulumi: config.Pulumi{BackendURL: "file://" + filepath.Join(data, "state"), Home: filepath.Join(dir, "pulumi-home"), Root: tools,
			PulumiCLI: config.PulumiCLI{Offline: true}},
		Stacks: []config.Stack{{Name: "site-pulls", Path: "stacks/site", Stack: "bench", Approval: config.ApprovalAuto,
			ApprovalTimeout: config.Duration(time.Hour), VerifyTimeout: config.Duration(time.Minute)}},
		HTTP: config.HTTP{Listen: "127.0.0.1:0"}, DataDir: data,
		Webhooks: config.Webhooks{GiteaSecretEnv: "BENCH_GITEA_HOOK"},
		Secrets: config.Secrets{PulumiPassphrase: "bench", GiteaSecret: webhookSecret, GitUsername: owner.Name, GitPassword: owner.Password,
			ForgeTokens: map[string]string{"": owner.Token}},
	}
	cfg.ApplyDefaults(dir)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w, err := worker.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	if err := waitSucceeded(ctx, w, contract.ChangeWorkflowID(branch, head)); err != nil {
		return nil, fmt.Errorf("initial deploy: %w", err)
	}
	if _, _, err := api.CreateRepoHook("bench", "infra", sdk.CreateHookOption{
		Type: sdk.HookTypeGitea, Active: true, Events: []string{"pull_request", "pull_request_sync"},
		Config: map[string]string{"url": "http://" + w.Addr() + "/webhooks/gitea", "content_type": "json", "secret": webhookSecret},
	}); err != nil {
		return nil, err
	}
	if err := git(repo, "checkout", "-q", "-b", "feature"); err != nil {
		return nil, err
	}
	var lat []float64
	for i := range count + 1 { // the first opens the pull request, untimed
		if err := setContent(filepath.Join(repo, "stacks", "site"), "bench", fmt.Sprintf("v%d", i+1)); err != nil {
			return nil, err
		}
		if err := git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-am", fmt.Sprintf("v%d", i+1)); err != nil {
			return nil, err
		}
		sha, err := gitOut(repo, "rev-parse", "HEAD")
		if err != nil {
			return nil, err
		}
		pushed := time.Now()
		if err := git(repo, "push", "-q", "-f", "origin", "HEAD:feature"); err != nil {
			return nil, err
		}
		if i == 0 {
			if _, _, err := api.CreatePullRequest("bench", "infra", sdk.CreatePullRequestOption{Head: "feature", Base: branch, Title: "bench"}); err != nil {
				return nil, err
			}
		}
		if err := waitStatus(ctx, api, sha, contract.StatusContext("site-pulls")); err != nil {
			return nil, err
		}
		if i > 0 {
			lat = append(lat, time.Since(pushed).Seconds())
		}
	}
	return lat, nil
}

// waitStatus waits until sha's status of context is a success; the loop
// polls the forge, which has no way to push it here.
func waitStatus(ctx context.Context, api *sdk.Client, sha, context string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		statuses, _, err := api.ListStatuses("bench", "infra", sha, sdk.ListStatusesOption{})
		if err != nil {
			return err
		}
		for _, s := range statuses {
			if s.Context == context && s.State == sdk.StatusSuccess {
				return nil
			}
			if s.Context == context && s.State == sdk.StatusFailure {
				return fmt.Errorf("preview of %.7s failed: %s", sha, s.Description)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no status on %.7s within 2 minutes", sha)
}

// waitSucceeded waits for a run's result, which must be succeeded.
func waitSucceeded(ctx context.Context, w *worker.Worker, id string) error {
	b := &bench{client: w.Client()}
	var res workflows.ChangeResult
	if err := b.waitResult(ctx, id, &res); err != nil {
		return err
	}
	if res.State != contract.StateSucceeded {
		return fmt.Errorf("run %s ended %s: %s", id, res.State, res.Reason)
	}
	return nil
}

func mkdir(parts ...string) string {
	p := filepath.Join(parts...)
	_ = os.MkdirAll(p, 0o755)
	return p
}
