// Package giteatest runs a real Gitea server for tests, headless on
// SQLite: the binary scripts/toolchain builds (bin/gitea), its templates
// and translations from the module cache (gitea-static), users and tokens
// made by its own CLI, webhooks allowed to loopback. Test only.
package giteatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdk "code.gitea.io/sdk/gitea"
)

// Server is one running Gitea.
type Server struct {
	// URL is its root, http://127.0.0.1:PORT.
	URL string
	bin string
	dir string
	ini string
	cmd *exec.Cmd
	mu  sync.Mutex // the CLI writes the database: one user at a time
}

// User is an account with a password (git over HTTP) and an API token.
type User struct {
	Name, Email, Password, Token string
}

// Start runs Gitea from tools (the toolchain root: bin/gitea,
// gitea-static) with its data in dir, until Stop.
func Start(ctx context.Context, tools, dir string) (*Server, error) {
	bin := filepath.Join(tools, "bin", "gitea")
	static := filepath.Join(tools, "gitea-static")
	for _, p := range []string{bin, filepath.Join(static, "options")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s is missing: run scripts/toolchain (make test does)", p)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), bin: bin, dir: dir, ini: filepath.Join(dir, "app.ini")}
	ini := fmt.Sprintf(`APP_NAME = changeops-e2e
RUN_MODE = prod
WORK_PATH = %[1]s

[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[2]d
ROOT_URL = %[3]s/
OFFLINE_MODE = true
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
STATIC_ROOT_PATH = %[4]s
APP_DATA_PATH = %[1]s/data

[database]
DB_TYPE = sqlite3
PATH = %[1]s/gitea.db

[repository]
ROOT = %[1]s/repositories

[security]
INSTALL_LOCK = true

[service]
DISABLE_REGISTRATION = true

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[queue]
TYPE = channel

[cron]
ENABLED = false

[mailer]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[log]
MODE = file
LEVEL = Warn
ROOT_PATH = %[1]s/log
`, dir, port, s.URL, static)
	if err := os.WriteFile(s.ini, []byte(ini), 0o600); err != nil {
		return nil, err
	}
	if _, err := s.run(ctx, "migrate"); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "gitea.out"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "web", "-c", s.ini, "-w", dir)
	s.cmd.Env = s.env()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start gitea: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait(); log.Close() }()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(s.URL + "/api/v1/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(filepath.Join(dir, "gitea.out"))
			return nil, fmt.Errorf("gitea web exited: %v\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("gitea did not answer within a minute")
		}
	}
}

// Stop ends the server.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
}

// env is the CLI's environment: the tests run as root, which Gitea
// refuses unless told.
func (s *Server) env() []string {
	return append(os.Environ(), "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true", "GITEA_WORK_DIR="+s.dir)
}

func (s *Server) run(ctx context.Context, args ...string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.CommandContext(ctx, s.bin, append(args, "-c", s.ini, "-w", s.dir)...)
	cmd.Env = s.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("gitea %s: %w\n%s%s", strings.Join(args[:min(3, len(args))], " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// CreateUser makes an account with its own CLI, and a token with every
// scope.
func (s *Server) CreateUser(ctx context.Context, name string, admin bool) (User, error) {
	u := User{Name: name, Email: name + "@example.com", Password: name + "-Passw0rd!"}
	args := []string{"admin", "user", "create", "--username", name, "--password", u.Password, "--email", u.Email, "--must-change-password=false"}
	if admin {
		args = append(args, "--admin")
	}
	if _, err := s.run(ctx, args...); err != nil {
		return User{}, err
	}
	tok, err := s.run(ctx, "admin", "user", "generate-access-token", "--username", name, "--token-name", "changeops-e2e", "--scopes", "all", "--raw")
	if err != nil {
		return User{}, err
	}
	// The CLI may print a warning line first (running as root).
	lines := strings.Split(tok, "\n")
	u.Token = strings.TrimSpace(lines[len(lines)-1])
	return u, nil
}

// Client is an API client acting as u.
func (s *Server) Client(u User) (*sdk.Client, error) {
	return sdk.NewClient(s.URL, sdk.SetToken(u.Token))
}

// CloneURL is the HTTP address of owner/name, with u's credentials.
func (s *Server) CloneURL(owner, name string, u User) string {
	return fmt.Sprintf("http://%s:%s@%s/%s/%s.git", u.Name, u.Password, strings.TrimPrefix(s.URL, "http://"), owner, name)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
