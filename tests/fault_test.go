package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"gopkg.in/yaml.v3"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/devserver"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// The fault-injection suite: `changeops worker` runs as a process in a
// process group of its own and is killed with SIGKILL, with its Pulumi CLI,
// language host and provider, as a crashed machine would lose them, at each
// point of a run. A new worker process then finishes the run. Each test
// checks the final state, the resources in the Pulumi state (each once, no
// pending operations), that no lock is left on the stack, the revert
// commits, and that every step was announced. The tests run in parallel:
// most of their time is Temporal waiting out a heartbeat timeout.

// workerProcess is one `changeops worker` process.
type workerProcess struct {
	cmd *exec.Cmd
	log string
}

// writeConfig writes cfg as changeops.yaml and returns its path.
func writeConfig(t *testing.T, cfg *config.Config) string {
	t.Helper()
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "changeops.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWorkerProcess runs `changeops worker` for cfg with extra
// environment variables and flags, and waits until it is ready.
func startWorkerProcess(t *testing.T, cfg *config.Config, name string, env []string, args ...string) *workerProcess {
	t.Helper()
	p := spawnWorker(t, cfg, name, env, args...)
	p.waitReady(t, cfg, name)
	return p
}

// spawnWorker starts `changeops worker` without waiting for it.
func spawnWorker(t *testing.T, cfg *config.Config, name string, env []string, args ...string) *workerProcess {
	t.Helper()
	p := &workerProcess{log: filepath.Join(t.TempDir(), name+".log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary, append([]string{"worker", "--config", writeConfig(t, cfg)}, args...)...)
	p.cmd.Env = append(os.Environ(), append(env, cfg.Pulumi.PassphraseEnv+"="+cfg.Secrets.PulumiPassphrase, "CHANGEOPS_TOOLS="+tools)...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", name, lastLines(string(b), 40))
		}
	})
	return p
}

// waitReady waits until the worker's /readyz answers 200.
func (p *workerProcess) waitReady(t *testing.T, cfg *config.Config, name string) {
	t.Helper()
	waitFor(t, time.Minute, name+" ready", func() (bool, string) {
		resp, err := http.Get("http://" + cfg.HTTP.Listen + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// kill ends the worker and everything it started, at once.
func (p *workerProcess) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// notes returns the steps the worker announced for a run (its console
// notifier's log lines), in order.
func (p *workerProcess) notes(t *testing.T, run string) []string {
	t.Helper()
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg   string `json:"msg"`
			Run   string `json:"run"`
			State string `json:"state"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Run == run && line.State != "" {
			out = append(out, line.Msg)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// faultFixture is one fault test's repository, stack and configuration.
type faultFixture struct {
	t      *testing.T
	remote *gittest.Remote
	cfg    *config.Config
	c      client.Client
	dir    string // where the stack writes its files
	marks  string // what the paused provider, checks and activities record
	branch string
}

func newFaultFixture(t *testing.T, name string, s config.Stack, files map[string]string) *faultFixture {
	t.Helper()
	f := &faultFixture{t: t, branch: "e2e-fault-" + name, dir: t.TempDir()}
	f.marks = filepath.Join(f.dir, "marks")
	f.remote = gittest.New(t, f.branch)
	f.remote.Commit("Add the stack", files)
	s.Name = "fault-" + name
	f.cfg = testConfig(t, f.remote.Bare, f.branch, s)
	f.cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", freePort())
	f.cfg.Log.Format = "json"
	c, err := client.Dial(client.Options{HostPort: temporalURL, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.c = c
	return f
}

// twoFiles is a site program writing page and, beside it, second.
func twoFiles(dir, out, second string) map[string]string {
	files := siteProject(dir, out, "v1")
	files[dir+"/Pulumi.yaml"] = siteProgram(nil, fileResource("page", "${outFile}", "${content}"), fileResource("second", second, "${content}"))
	return files
}

// waitMark waits until the marks file holds want.
func (f *faultFixture) waitMark(want string) {
	f.t.Helper()
	waitFor(f.t, 2*time.Minute, "mark "+want, func() (bool, string) {
		b, _ := os.ReadFile(f.marks)
		return strings.Contains(string(b), want), string(b)
	})
}

// push commits new content for the site and returns the run's ID.
func (f *faultFixture) push(content string) string {
	out := filepath.Join(f.dir, "page.txt")
	sha := f.remote.Commit("Serve "+content, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"})
	return contract.ChangeWorkflowID(f.branch, sha)
}

// locksLeft lists the lock files under the DIY backend's folder.
func (f *faultFixture) locksLeft() []string {
	var locks []string
	root := filepath.Join(strings.TrimPrefix(f.cfg.Pulumi.BackendURL, "file://"), ".pulumi", "locks")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		// A lock is a .json file.
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".json") {
			b, _ := os.ReadFile(path)
			locks = append(locks, strings.TrimPrefix(path, root)+" "+string(b))
		}
		return nil
	})
	return locks
}

// sidecars lists gocloud fileblob's .attrs files under the backend's folder.
func (f *faultFixture) sidecars() []string {
	var found []string
	root := strings.TrimPrefix(f.cfg.Pulumi.BackendURL, "file://")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".attrs") {
			found = append(found, strings.TrimPrefix(path, root))
		}
		return nil
	})
	return found
}

// expectNotes checks that the workers together announced each step, once
// the run has ended (its last notification goes out before it completes).
func (f *faultFixture) expectNotes(c client.Client, run string, workers []*workerProcess, steps ...string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.GetWorkflow(ctx, run, "").Get(ctx, nil); err != nil {
		f.t.Fatalf("run %s did not complete: %v", run, err)
	}
	var all []string
	for _, w := range workers {
		all = append(all, w.notes(f.t, run)...)
	}
	joined := "\n" + strings.Join(all, "\n") + "\n"
	for _, s := range steps {
		if !strings.Contains(joined, "\n"+s+"\n") {
			f.t.Errorf("step %q was never announced; announced: %q", s, all)
		}
	}
}

// Killed while previewing (the provider is inside its preview of the new
// file): the new worker's preview attempt finds nothing held, the run asks
// for approval, and deploys the file once.
func TestFaultKillDuringPlan(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t, "plan", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"}},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	w1 := startWorkerProcess(t, f.cfg, "worker1", []string{"CHANGEOPS_FILE_PAUSE=page.txt", "CHANGEOPS_FILE_PAUSE_OP=preview-create", "CHANGEOPS_FILE_MARKS=" + f.marks})
	waitWatching(t, f.c, f.branch)
	id := f.push("v2")
	f.waitMark("preview-create")
	w1.kill()
	w2 := startWorkerProcess(t, f.cfg, "worker2", nil)
	waitState(t, f.c, id, 3*time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(context.Background(), f.c, id, signedBy("bob", true, "")); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, f.c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, filepath.Join(f.dir, "page.txt"), "v2")
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("%d files in the state, want 1", n)
	}
	if l := f.locksLeft(); len(l) != 0 {
		t.Errorf("locks left on the stack: %q", l)
	}
	f.expectNotes(f.c, id, []*workerProcess{w1, w2}, "received", "plan ready", "awaiting approval", "approved by bob", "applied", contract.StateSucceeded)
}

// Killed while the run waits for approval: nothing is in flight, the new
// worker takes the run over and the approval completes it.
func TestFaultKillAwaitingApproval(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t, "approval", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"}},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	w1 := startWorkerProcess(t, f.cfg, "worker1", nil)
	waitWatching(t, f.c, f.branch)
	id := f.push("v2")
	waitState(t, f.c, id, time.Minute, contract.StateAwaitingApproval)
	w1.kill()
	w2 := startWorkerProcess(t, f.cfg, "worker2", nil)
	if _, err := starter.Decide(context.Background(), f.c, id, signedBy("bob", true, "")); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, f.c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("%d files in the state, want 1", n)
	}
	f.expectNotes(f.c, id, []*workerProcess{w1, w2}, "plan ready", "awaiting approval", "approved by bob", "applied", contract.StateSucceeded)
}

// Killed in the middle of `pulumi up`: the first file is created, the
// second is being created. The stack is left locked with a pending create.
// The next attempt, knowing the previous one died (its heartbeats stopped
// while in flight), releases the lock, clears the pending create and
// finishes: each file once in the state, no lock, no pending operation.
func TestFaultKillMidUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	second := filepath.Join(dir, "second-slow.txt")
	f := newFaultFixture(t, "up", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto},
		twoFiles("stacks/site", "/nonexistent/unused", second))
	f.dir = dir
	f.marks = filepath.Join(dir, "marks")
	w1 := startWorkerProcess(t, f.cfg, "worker1", []string{"CHANGEOPS_FILE_PAUSE=second-slow", "CHANGEOPS_FILE_PAUSE_OP=create", "CHANGEOPS_FILE_MARKS=" + f.marks})
	waitWatching(t, f.c, f.branch)
	id := f.push("v2")
	f.waitMark("create " + second)
	w1.kill()
	if l := f.locksLeft(); len(l) != 1 {
		t.Fatalf("after the kill the stack holds locks %q, want the dead update's", l)
	}
	w2 := startWorkerProcess(t, f.cfg, "worker2", nil)
	run := waitState(t, f.c, id, 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, filepath.Join(dir, "page.txt"), "v2")
	fileIs(t, second, "v2")
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 2 {
		t.Errorf("%d files in the state, want 2", n)
	}
	if l := f.locksLeft(); len(l) != 0 {
		t.Errorf("locks left on the stack: %q", l)
	}
	// The file backend keeps no metadata sidecars: fileblob writes them in
	// place, and one emptied by a kill bricked the stack ("failed to load
	// checkpoint: EOF", seen once in a full test run).
	if side := f.sidecars(); len(side) != 0 {
		t.Errorf("metadata sidecars in the state folder: %q", side)
	}
	if a := run.Status.Applies; len(a) != 1 || len(a[0].Recovered) < 2 || !strings.Contains(strings.Join(a[0].Recovered, ";"), "creating urn:pulumi:test::site::changeops:index:File::second") {
		t.Errorf("apply = %+v; want the lock and the pending create of second named as recovered", a)
	}
	if n := countActivities(t, f.c, id, "Apply"); n != 2 {
		t.Errorf("Apply took %d attempts, want 2: the killed one and the one that recovered", n)
	}
	f.expectNotes(f.c, id, []*workerProcess{w1, w2}, "plan ready", "approved by policy", "applying", "applied", contract.StateSucceeded)
}

// Killed while a verification check runs: the check runs again on the new
// worker once the heartbeat times out, passes, and the run succeeds.
func TestFaultKillDuringVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marks := filepath.Join(dir, "marks")
	// The first run of the check marks and hangs; the second passes.
	check := fmt.Sprintf("if [ -f %s ]; then echo second run; else echo verifying > %s; sleep 600; fi", marks, marks)
	f := newFaultFixture(t, "verify", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{Command: []string{"sh", "-c", check}}}, VerifyTimeout: config.Duration(5 * time.Minute)},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	f.dir, f.marks = dir, marks
	w1 := startWorkerProcess(t, f.cfg, "worker1", nil)
	waitWatching(t, f.c, f.branch)
	id := f.push("v2")
	f.waitMark("verifying")
	w1.kill()
	w2 := startWorkerProcess(t, f.cfg, "worker2", nil)
	run := waitState(t, f.c, id, 4*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if v := run.Status.Verifications; len(v) != 1 || !v[0].Passed || !strings.Contains(v[0].Results[0].Detail, "second run") {
		t.Errorf("verifications = %+v; want the second run of the check to pass", v)
	}
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("%d files in the state, want 1", n)
	}
	f.expectNotes(f.c, id, []*workerProcess{w1, w2}, "applied", "verified "+f.cfg.Stacks[0].Name, contract.StateSucceeded)
}

// Killed after the revert commit was pushed and before the Revert activity
// returned: the retry finds the revert on the branch and reuses it. One
// revert commit, the stack restored, the run rolled-back.
func TestFaultKillAfterRevertPush(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	page := filepath.Join(dir, "page.txt")
	// The check fails while the page says "broken".
	check := fmt.Sprintf("! grep -q broken %s", page)
	f := newFaultFixture(t, "revert", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{Command: []string{"sh", "-c", check}}}, VerifyTimeout: config.Duration(10 * time.Second)},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	f.dir = dir
	f.marks = filepath.Join(dir, "marks")
	w1 := startWorkerProcess(t, f.cfg, "worker1", nil, "--pause-at", activities.PauseAfterRevertPush, "--pause-marks", f.marks)
	waitWatching(t, f.c, f.branch)
	good := f.push("v2")
	if run := waitState(t, f.c, good, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("first change ended %s: %s", run.State, run.Error)
	}
	id := f.push("broken")
	f.waitMark(activities.PauseAfterRevertPush)
	w1.kill()
	w2 := startWorkerProcess(t, f.cfg, "worker2", nil)
	run := waitState(t, f.c, id, 3*time.Minute, contract.StateRolledBack, contract.StateRollbackFailed, contract.StateFailed)
	if run.State != contract.StateRolledBack {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	reverts := f.remote.Git(f.remote.Bare, "log", "--format=%s", f.branch, "--grep", "^Revert ")
	if strings.Count(reverts, "Revert ") != 1 {
		t.Fatalf("revert commits on %s: %q; want exactly one", f.branch, reverts)
	}
	fileIs(t, page, "v2")
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("%d files in the state, want 1", n)
	}
	if l := f.locksLeft(); len(l) != 0 {
		t.Errorf("locks left on the stack: %q", l)
	}
	f.expectNotes(f.c, id, []*workerProcess{w1, w2}, "rolling back", "restored "+f.cfg.Stacks[0].Name, "revert pushed", contract.StateRolledBack)
}

// Temporal itself goes away: the worker starts before the server does and
// waits for it; then the server (a dev server keeping its SQLite file) is
// restarted while a run waits for approval. The run continues: the
// approval after the restart completes it.
func TestFaultTemporalRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := devserver.Options{
		Bin: filepath.Join(tools, "bin", "temporal"), DBFile: filepath.Join(dir, "temporal.db"),
		IP: "127.0.0.1", Port: freePort(), UIPort: freePort(), LogFile: filepath.Join(dir, "temporal.log"),
	}
	f := newFaultFixture(t, "restart", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"}},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	f.cfg.Temporal.Address = fmt.Sprintf("127.0.0.1:%d", opts.Port)

	// The worker comes first and waits for Temporal.
	w := spawnWorker(t, f.cfg, "worker", nil)
	waitFor(t, time.Minute, "the worker waiting for Temporal", func() (bool, string) {
		b, _ := os.ReadFile(w.log)
		return strings.Contains(string(b), "waiting for Temporal"), lastLines(string(b), 3)
	})
	srv, err := devserver.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	w.waitReady(t, f.cfg, "worker")
	c, err := client.Dial(client.Options{HostPort: f.cfg.Temporal.Address, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitWatching(t, c, f.branch)
	id := f.push("v2")
	waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)

	if err := srv.Stop(); err != nil {
		t.Logf("stop dev server: %v", err)
	}
	if srv, err = devserver.Start(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if _, err := starter.Decide(context.Background(), c, id, signedBy("bob", true, "")); err != nil {
		t.Fatalf("approve after the restart: %v", err)
	}
	run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, filepath.Join(f.dir, "page.txt"), "v2")
	f.expectNotes(c, id, []*workerProcess{w}, "awaiting approval", "approved by bob", "applied", contract.StateSucceeded)
}

// Outages on the worker's own machine: the Pulumi CLI failing to start,
// then the workspace disk full. Each is retried with backoff, shown in the
// run's status with the reason, and once it is over the run carries on
// from where it was: nothing lost, and no half-written workspace trusted.
func TestOutagePulumiCLIAndFullDisk(t *testing.T) {
	t.Parallel()
	const branch = "e2e-outage-local"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "page.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	// A toolchain of links to the real one, whose pulumi can be broken.
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"pulumi", "pulumi-language-yaml", "pulumi-resource-changeops"} {
		if err := os.Symlink(filepath.Join(tools, "bin", b), filepath.Join(bin, b)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t, remote.Bare, branch, config.Stack{Name: "site-outage", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	cfg.Pulumi.Root, cfg.Pulumi.CLI = root, filepath.Join(bin, "pulumi")
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	ctx := context.Background()

	retrying := func(id, reason string) {
		t.Helper()
		waitFor(t, time.Minute, id+" retrying because "+reason, func() (bool, string) {
			r, err := starter.Status(ctx, c, id)
			if err != nil {
				return false, err.Error()
			}
			if r.State != contract.StatePlanning {
				return false, "state " + r.State
			}
			for _, a := range r.Retrying {
				if strings.Contains(a, reason) {
					return true, ""
				}
			}
			return false, strings.Join(r.Retrying, "; ")
		})
	}

	// 1. The CLI fails to start.
	pulumi := filepath.Join(bin, "pulumi")
	if err := os.Remove(pulumi); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pulumi, []byte("#!/bin/sh\necho 'pulumi: cannot start' >&2\nexit 127\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sha := remote.Commit("Serve v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	id := contract.ChangeWorkflowID(branch, sha)
	retrying(id, "pulumi CLI")
	if err := os.Remove(pulumi); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tools, "bin", "pulumi"), pulumi); err != nil {
		t.Fatal(err)
	}
	if run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("after the CLI came back the run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, out, "v2")

	// 2. The workspace disk is full (a 1 MiB tmpfs, filled).
	ws := filepath.Join(cfg.DataDir, "workspaces")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", ws).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs on %s (the suite runs as root on this machine kind): %v: %s", ws, err, b)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", ws).Run() })
	filler := filepath.Join(ws, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o644); err == nil {
		t.Fatal("wrote 2 MiB into a 1 MiB tmpfs")
	}
	sha = remote.Commit("Serve v3", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v3\n"})
	id = contract.ChangeWorkflowID(branch, sha)
	retrying(id, "no space left on device")
	entries, _ := os.ReadDir(ws)
	for _, e := range entries {
		if e.Name() != "filler" {
			t.Errorf("the full disk kept %s: a failed export must leave nothing behind", e.Name())
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("after space was freed the run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, out, "v3")
	if n := resourcesOfType(t, cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("%d files in the state, want 1", n)
	}
}
