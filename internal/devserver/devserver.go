// Package devserver supervises a Temporal dev server (`temporal server
// start-dev`, SQLite-backed, with its Web UI) as a child process of
// `changeops dev`: started with it, stopped with it, never left behind.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options say where the server keeps its data and listens.
type Options struct {
	// Bin is the temporal CLI.
	Bin string
	// DBFile is the SQLite file; runs survive a restart.
	DBFile string
	IP     string
	Port   int
	UIPort int
	// LogFile receives the server's output.
	LogFile string
}

// Server is a running dev server.
type Server struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	opts Options
}

// Start launches the server and returns once its frontend accepts
// connections, or with an error that quotes the server's last words.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if _, err := os.Stat(opts.Bin); err != nil {
		return nil, fmt.Errorf("temporal CLI %s not found (run scripts/toolchain): %w", opts.Bin, err)
	}
	if err := os.MkdirAll(filepath.Dir(opts.DBFile), 0o755); err != nil {
		return nil, fmt.Errorf("create folder for %s: %w", opts.DBFile, err)
	}
	logf, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open temporal log %s: %w", opts.LogFile, err)
	}
	cmd := exec.Command(opts.Bin, "server", "start-dev",
		"--db-filename", opts.DBFile,
		"--ip", opts.IP,
		"--port", strconv.Itoa(opts.Port),
		"--ui-port", strconv.Itoa(opts.UIPort),
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: Ctrl-C reaches changeops only, which stops the
	// worker first and then the server. Pdeathsig stops the server if
	// changeops itself is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start temporal dev server: %w", err)
	}
	s := &Server{cmd: cmd, done: make(chan struct{}), opts: opts}
	go func() {
		s.err = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx, 2*time.Minute); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Address is the frontend's host:port.
func (s *Server) Address() string {
	return net.JoinHostPort(s.opts.IP, strconv.Itoa(s.opts.Port))
}

// UIURL is the Web UI's base URL.
func (s *Server) UIURL() string {
	return "http://" + net.JoinHostPort(s.opts.IP, strconv.Itoa(s.opts.UIPort))
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", s.Address(), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("temporal dev server exited (%v): %s", s.err, tail(s.opts.LogFile))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("temporal dev server not listening on %s after %s: %s", s.Address(), limit, tail(s.opts.LogFile))
		}
	}
}

// Stop asks the server to shut down and kills it if it does not within 15s.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	var exit *exec.ExitError
	if s.err != nil && !errors.As(s.err, &exit) {
		return s.err
	}
	return nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}
