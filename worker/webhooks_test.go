package worker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/changeops/changeops/config"
)

// GitHub's documented example: secret "It's a Secret to Everybody", payload
// "Hello, World!" (docs: "Validating webhook deliveries").
func TestValidHMACGitHubExample(t *testing.T) {
	const sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if !validHMAC(sig, []byte("Hello, World!"), "It's a Secret to Everybody") {
		t.Error("GitHub's example signature does not verify")
	}
	for _, bad := range []string{"", "zz", sig[:62], strings.Replace(sig, "7", "8", 1)} {
		if validHMAC(bad, []byte("Hello, World!"), "It's a Secret to Everybody") {
			t.Errorf("signature %q verified", bad)
		}
	}
	if validHMAC(sig, []byte("Hello, World?"), "It's a Secret to Everybody") {
		t.Error("a signature of another body verified")
	}
}

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestWebhookEndpoints(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{
		Repo:     config.Repo{URL: "https://github.com/acme/infra.git", Branch: "main"},
		Repos:    []config.Repo{{Name: "network", URL: "git@github.com:acme/network.git", Branch: "main"}},
		Stacks:   []config.Stack{{Name: "web"}, {Name: "web-staging", Branch: "staging"}, {Name: "vpc", Repo: "network"}},
		Webhooks: config.Webhooks{MaxBody: 1024},
		Secrets:  config.Secrets{GitHubSecret: "gh-secret", GitLabToken: "gl-token", GiteaSecret: "gt-secret", GenericSecret: "generic-secret"},
	}
	var mu sync.Mutex
	var poked []string
	h := &webhooks{cfg: cfg, logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		poke: func(_ context.Context, w config.Watch) error {
			mu.Lock()
			defer mu.Unlock()
			poked = append(poked, strings.TrimPrefix(w.Repo+"/"+w.Branch, "/"))
			return nil
		}}
	mux := http.NewServeMux()
	h.register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	push := `{"ref":"refs/heads/main","after":"3f2a91c","repository":{"html_url":"https://GitHub.com/acme/infra/"}}`
	staging := `{"ref":"refs/heads/staging","repository":{"ssh_url":"ssh://git@github.com/acme/infra.git"}}`
	cases := []struct {
		name, path, body string
		headers          map[string]string
		status           int
		poke             string // branch poked, or none
	}{
		{"github push", "github", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", push)}, 202, "main"},
		{"github push names the repository", "github", `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/network.git"}}`, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/network.git"}}`)}, 202, "network/main"},
		{"github untracked repository", "github", `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/other.git"}}`, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/other.git"}}`)}, 202, ""},
		{"gitlab project URL", "gitlab", `{"ref":"refs/heads/main","project":{"git_ssh_url":"git@github.com:acme/infra.git"}}`, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "gl-token"}, 202, "main"},
		{"generic by repo name", "generic", `{"branch":"main","repo":"network"}`, map[string]string{"X-Changeops-Signature": "sha256=" + sign("generic-secret", `{"branch":"main","repo":"network"}`)}, 202, "network/main"},
		{"github staging", "github", staging, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", staging)}, 202, "staging"},
		{"no repository with several configured", "github", `{"ref":"refs/heads/main"}`, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"ref":"refs/heads/main"}`)}, 202, ""},
		{"github forged", "github", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("not-the-secret", push)}, 401, ""},
		{"github signature of another body", "github", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"ref":"refs/heads/main"}`)}, 401, ""},
		{"github unsigned", "github", push, map[string]string{"X-GitHub-Event": "push"}, 401, ""},
		{"github ping", "github", `{"zen":"hi"}`, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"zen":"hi"}`)}, 202, ""},
		{"github untracked branch", "github", `{"ref":"refs/heads/feature"}`, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"ref":"refs/heads/feature"}`)}, 202, ""},
		{"github tag", "github", `{"ref":"refs/tags/v1"}`, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("gh-secret", `{"ref":"refs/tags/v1"}`)}, 202, ""},
		{"oversized", "github", strings.Repeat("x", 2048), map[string]string{"X-GitHub-Event": "push"}, 413, ""},
		{"gitlab push", "gitlab", push, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "gl-token"}, 202, "main"},
		{"gitlab wrong token", "gitlab", push, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "gl-tokem"}, 401, ""},
		{"gitea push", "gitea", push, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("gt-secret", push)}, 202, "main"},
		{"gitea forged", "gitea", push, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("gh-secret", push)}, 401, ""},
		{"generic by branch", "generic", `{"branch":"staging","repo":""}`, map[string]string{"X-Changeops-Signature": "sha256=" + sign("generic-secret", `{"branch":"staging","repo":""}`)}, 202, ""},
		{"generic not JSON", "generic", `main`, map[string]string{"X-Changeops-Signature": "sha256=" + sign("generic-secret", `main`)}, 400, ""},
	}
	for _, c := range cases {
		mu.Lock()
		poked = nil
		mu.Unlock()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/"+c.path, strings.NewReader(c.body))
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d (%s), want %d", c.name, resp.StatusCode, strings.TrimSpace(string(msg)), c.status)
		}
		mu.Lock()
		got := strings.Join(poked, ",")
		mu.Unlock()
		if got != c.poke {
			t.Errorf("%s: poked %q, want %q", c.name, got, c.poke)
		}
	}

	// An endpoint without a secret is off: nothing unsigned is accepted.
	cfg.Secrets.GitLabToken = ""
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/gitlab", strings.NewReader(push))
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unconfigured gitlab endpoint: status %d, want 404", resp.StatusCode)
	}
}
