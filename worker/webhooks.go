package worker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	forgeapi "github.com/changeops/changeops/internal/forge"
	"github.com/changeops/changeops/workflows"
)

// webhooks receives push notifications from forges. A delivery is trusted
// only after its signature or token checks out, and then it only pokes the
// branch's watcher: the watcher decides what is new, so a duplicated,
// reordered or lost delivery never starts a wrong run or misses one.
//
//	POST /webhooks/github   X-Hub-Signature-256: sha256=HMAC-SHA256(body)
//	POST /webhooks/gitlab   X-Gitlab-Token: the shared token
//	POST /webhooks/gitea    X-Gitea-Signature: HMAC-SHA256(body), hex
//	POST /webhooks/generic  X-Changeops-Signature: sha256=HMAC-SHA256(body)
//
// Answers: 202 poked or ignored (with why), 401 bad signature, 404 endpoint
// not configured, 413 body over webhooks.max_body (declared or read), 400
// unreadable push, 503 with Retry-After when http.max_concurrent deliveries
// are being read already.
type webhooks struct {
	cfg    *config.Config
	logger *slog.Logger
	poke   func(ctx context.Context, w config.Watch) error
	// preview wakes (or starts) a pull request's preview.
	preview func(ctx context.Context, repo string, ev contract.PullRequestEvent) error
	// bodies caps the deliveries read at once; nil: no cap.
	bodies *bodyGate
}

// forge describes one webhook dialect.
type forge struct {
	name   string
	secret func(config.Secrets) string
	// verify checks the delivery against the secret.
	verify func(r *http.Request, body []byte, secret string) bool
	// isPush says whether the delivery's event is a push.
	isPush func(r *http.Request) bool
	// isPull says whether it is about a pull (merge) request; nil: never.
	isPull func(r *http.Request) bool
}

var forges = []forge{
	{
		name:   "github",
		secret: func(s config.Secrets) string { return s.GitHubSecret },
		verify: func(r *http.Request, body []byte, secret string) bool {
			return validHMAC(strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256="), body, secret)
		},
		isPush: func(r *http.Request) bool { return r.Header.Get("X-GitHub-Event") == "push" },
		isPull: func(r *http.Request) bool { return r.Header.Get("X-GitHub-Event") == "pull_request" },
	},
	{
		name:   "gitlab",
		secret: func(s config.Secrets) string { return s.GitLabToken },
		verify: func(r *http.Request, _ []byte, secret string) bool {
			return subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Gitlab-Token")), []byte(secret)) == 1
		},
		isPush: func(r *http.Request) bool { return r.Header.Get("X-Gitlab-Event") == "Push Hook" },
		isPull: func(r *http.Request) bool { return r.Header.Get("X-Gitlab-Event") == "Merge Request Hook" },
	},
	{
		name:   "gitea",
		secret: func(s config.Secrets) string { return s.GiteaSecret },
		verify: func(r *http.Request, body []byte, secret string) bool {
			return validHMAC(r.Header.Get("X-Gitea-Signature"), body, secret)
		},
		isPush: func(r *http.Request) bool { return r.Header.Get("X-Gitea-Event") == "push" },
		// Opened, pushed to (pull_request_sync), closed, reopened, edited:
		// Gitea sends them all as pull_request.
		isPull: func(r *http.Request) bool { return r.Header.Get("X-Gitea-Event") == "pull_request" },
	},
	{
		name:   "generic",
		secret: func(s config.Secrets) string { return s.GenericSecret },
		verify: func(r *http.Request, body []byte, secret string) bool {
			return validHMAC(strings.TrimPrefix(r.Header.Get("X-Changeops-Signature"), "sha256="), body, secret)
		},
		isPush: func(*http.Request) bool { return true },
	},
}

// validHMAC compares a hex HMAC-SHA256 of body in constant time.
func validHMAC(got string, body []byte, secret string) bool {
	sig, err := hex.DecodeString(got)
	if err != nil || len(sig) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

func (h *webhooks) register(mux *http.ServeMux) {
	for _, f := range forges {
		mux.Handle("POST /webhooks/"+f.name, h.bodies.limit(h.handler(f)))
	}
}

func (h *webhooks) handler(f forge) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret := f.secret(h.cfg.Secrets)
		if secret == "" {
			http.Error(w, fmt.Sprintf("the %s webhook is not configured: set webhooks.%s_*_env", f.name, f.name), http.StatusNotFound)
			return
		}
		tooBigMsg := fmt.Sprintf("body over %d bytes (webhooks.max_body)", h.cfg.Webhooks.MaxBody)
		if r.ContentLength > h.cfg.Webhooks.MaxBody {
			// Refused on its declared length, without receiving it.
			http.Error(w, tooBigMsg, http.StatusRequestEntityTooLarge)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.Webhooks.MaxBody))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, tooBigMsg, http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !f.verify(r, body, secret) {
			h.logger.Warn("webhook refused: bad signature", "forge", f.name, "remote", r.RemoteAddr)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if f.isPull != nil && f.isPull(r) {
			h.pull(w, r, body)
			return
		}
		if !f.isPush(r) {
			accepted(w, "not a push event: ignored")
			return
		}
		p, err := parsePush(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !p.isBranch {
			accepted(w, "not a branch push (a tag?): ignored")
			return
		}
		repo, ok := h.repoOf(p)
		if !ok {
			accepted(w, "repository not tracked: ignored")
			return
		}
		watch := config.Watch{Repo: repo, Branch: p.branch}
		if !slices.Contains(h.cfg.Watches(), watch) {
			accepted(w, fmt.Sprintf("branch %q is not tracked: ignored", p.branch))
			return
		}
		if err := h.poke(r.Context(), watch); err != nil {
			h.logger.Error("webhook: poke watcher", "repo", repo, "branch", p.branch, "error", err)
			http.Error(w, "watcher unavailable; the next poll will see the push", http.StatusServiceUnavailable)
			return
		}
		accepted(w, "watcher of "+p.branch+" poked")
	}
}

// pull wakes the preview of a pull request into a tracked branch of a
// repository with a forge. The delivery only says which pull request: the
// preview reads it from the forge's API.
func (h *webhooks) pull(w http.ResponseWriter, r *http.Request, body []byte) {
	p, err := parsePull(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	repo, ok := h.repoOf(p.push)
	if !ok {
		accepted(w, "repository not tracked: ignored")
		return
	}
	if h.cfg.ForgeOf(repo) == nil {
		accepted(w, "repository has no forge configured (repos[].forge): pull request ignored")
		return
	}
	if !slices.Contains(h.cfg.Watches(), config.Watch{Repo: repo, Branch: p.branch}) {
		accepted(w, fmt.Sprintf("pull request into branch %q, which is not tracked: ignored", p.branch))
		return
	}
	if err := h.preview(r.Context(), repo, contract.PullRequestEvent{Number: p.number, Action: p.action}); err != nil {
		h.logger.Error("webhook: wake preview", "repo", repo, "number", p.number, "error", err)
		http.Error(w, "preview unavailable; the next push to the pull request will try again", http.StatusServiceUnavailable)
		return
	}
	accepted(w, fmt.Sprintf("preview of #%d woken", p.number))
}

// pullEvent is what a pull request delivery says: which one, into which
// branch, of which repository.
type pullEvent struct {
	push   // branch: the base branch; urls: the base repository's
	number int
	action string
}

// parsePull reads a pull request delivery: GitHub's and Gitea's
// ("number", "pull_request.base.ref", "repository") or GitLab's merge
// request ("object_attributes.iid", ".target_branch", "project").
func parsePull(body []byte) (pullEvent, error) {
	var p struct {
		Action      string `json:"action"`
		Number      int    `json:"number"`
		PullRequest struct {
			Base struct {
				Ref string `json:"ref"`
			} `json:"base"`
		} `json:"pull_request"`
		Attrs struct {
			IID          int    `json:"iid"`
			TargetBranch string `json:"target_branch"`
			Action       string `json:"action"`
		} `json:"object_attributes"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return pullEvent{}, fmt.Errorf("pull request body is not JSON: %w", err)
	}
	out := pullEvent{push: push{urls: repoURLs(body), isBranch: true}, number: p.Number, action: p.Action}
	out.branch = p.PullRequest.Base.Ref
	if p.Attrs.IID > 0 {
		out.number, out.branch, out.action = p.Attrs.IID, p.Attrs.TargetBranch, p.Attrs.Action
	}
	if out.number <= 0 || out.branch == "" {
		return pullEvent{}, errors.New("pull request body names no number and base branch")
	}
	out.action = forgeapi.Bound(out.action, 40) // it reaches a signal's payload
	return out, nil
}

// repoOf finds the configured repository a push is for, by the URLs the
// forge sends (or the generic endpoint's "repo" name). A push that names no
// repository is for the only one, when there is only one.
func (h *webhooks) repoOf(p push) (string, bool) {
	if p.repoName != "" {
		_, ok := h.cfg.RepoByName(p.repoName)
		return p.repoName, ok
	}
	if len(p.urls) == 0 {
		return "", len(h.cfg.Repos) == 0
	}
	for _, r := range h.cfg.AllRepos() {
		for _, u := range p.urls {
			if u != "" && normalizeURL(u) == normalizeURL(r.URL) {
				return r.Name, true
			}
		}
	}
	return "", false
}

// normalizeURL reduces the spellings of one repository's address (https,
// ssh, scp-like, with or without .git) to host/path.
func normalizeURL(u string) string {
	u = strings.ToLower(strings.TrimSpace(u))
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	} else if at := strings.Index(u, "@"); at >= 0 && strings.Contains(u[at:], ":") {
		u = strings.Replace(u, ":", "/", 1) // git@host:org/repo
	}
	if at := strings.Index(u, "@"); at >= 0 && at < strings.Index(u+"/", "/") {
		u = u[at+1:]
	}
	u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")
	return u
}

// push is what a delivery says: the branch, and which repository.
type push struct {
	branch   string
	isBranch bool // false for other refs (tags)
	repoName string
	urls     []string
}

// parsePush reads a push. Every forge (and the generic endpoint) sends
// "ref": "refs/heads/<branch>"; the generic endpoint may send "branch" and
// "repo" (a repos entry's name) instead.
func parsePush(body []byte) (push, error) {
	var p struct {
		Ref    string `json:"ref"`
		Branch string `json:"branch"`
		Repo   string `json:"repo"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return push{}, fmt.Errorf("push body is not JSON: %w", err)
	}
	out := push{repoName: p.Repo, urls: repoURLs(body)}
	switch {
	case p.Branch != "":
		out.branch, out.isBranch = p.Branch, true
	case p.Ref != "":
		out.branch, out.isBranch = strings.CutPrefix(p.Ref, "refs/heads/")
	default:
		return push{}, errors.New(`push body has neither "ref" nor "branch"`)
	}
	return out, nil
}

// repoURLs are the repository's addresses in a delivery (JSON already
// read once), where GitHub and Gitea ("repository") and GitLab
// ("project") put them.
func repoURLs(body []byte) []string {
	type urls struct {
		CloneURL   string `json:"clone_url"`
		SSHURL     string `json:"ssh_url"`
		HTMLURL    string `json:"html_url"`
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		WebURL     string `json:"web_url"`
	}
	var p struct {
		Repository urls `json:"repository"`
		Project    urls `json:"project"`
	}
	_ = json.Unmarshal(body, &p) // the caller has checked it is JSON
	var out []string
	for _, u := range []urls{p.Repository, p.Project} {
		for _, s := range []string{u.CloneURL, u.SSHURL, u.HTMLURL, u.GitHTTPURL, u.GitSSHURL, u.WebURL} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func accepted(w http.ResponseWriter, msg string) {
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintln(w, msg)
}

// preview wakes a pull request's preview, starting it if it is not
// running (signal-with-start: one preview per pull request).
func (w *Worker) preview(ctx context.Context, repo string, ev contract.PullRequestEvent) error {
	id := contract.PreviewID(w.cfg.ForgeOf(repo).Project, ev.Number)
	_, err := w.client.SignalWithStartWorkflow(ctx, id, contract.PullRequestSignal, ev,
		client.StartWorkflowOptions{
			ID:            id,
			TaskQueue:     w.cfg.Temporal.TaskQueue,
			StaticSummary: fmt.Sprintf("Preview of pull request #%d", ev.Number),
		},
		contract.PreviewWorkflowName, workflows.PreviewInput{Repo: repo, Number: ev.Number, UIURL: w.cfg.Temporal.UIURL})
	return err
}

// poke signals a branch's watcher to poll now.
func (w *Worker) poke(ctx context.Context, watch config.Watch) error {
	return w.client.SignalWorkflow(ctx, contract.WatcherID(watch.Repo, watch.Branch), "", contract.PokeSignal, nil)
}
