// Package gittest gives tests real git remotes: a bare repository, a clone
// to commit in with the git CLI as a person would, and git's own smart-HTTP
// server (git http-backend) behind basic auth.
package gittest

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Remote is a bare repository and a clone of it; commits are by
// alice <alice@example.com>.
type Remote struct {
	Bare   string
	Clone  string
	Branch string
	t      testing.TB
}

// New creates an empty remote with branch as its default branch.
func New(t testing.TB, branch string) *Remote {
	t.Helper()
	dir := t.TempDir()
	r := &Remote{Bare: filepath.Join(dir, "remote.git"), Clone: filepath.Join(dir, "clone"), Branch: branch, t: t}
	r.Git(dir, "init", "-q", "--bare", "-b", branch, r.Bare)
	r.Git(dir, "init", "-q", "-b", branch, r.Clone)
	r.Git(r.Clone, "config", "user.name", "alice")
	r.Git(r.Clone, "config", "user.email", "alice@example.com")
	r.Git(r.Clone, "remote", "add", "origin", r.Bare)
	return r
}

// Git runs git in dir, isolated from the user's and system's config.
func (r *Remote) Git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write puts files (path → content) into the clone; *.sh files are
// executable.
func (r *Remote) Write(files map[string]string) {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Clone, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Commit writes files, commits everything in the clone, pushes (forced, so
// a test can rewrite history) and returns the new SHA.
func (r *Remote) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.Write(files)
	r.Git(r.Clone, "add", "-A")
	r.Git(r.Clone, "commit", "-q", "-m", msg)
	r.Git(r.Clone, "push", "-q", "-f", "origin", "HEAD:"+r.Branch)
	return r.Git(r.Clone, "rev-parse", "HEAD")
}

// ServeHTTP puts the bare repository behind git http-backend (through
// net/http/cgi) with basic auth and returns its URL.
func (r *Remote) ServeHTTP(user, password string) string {
	r.t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		r.t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		// REMOTE_USER: the handler below authenticated the user, which
		// is what lets git http-backend accept pushes.
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.Bare), "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=" + user},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, req)
	}))
	r.t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(r.Bare)
}
