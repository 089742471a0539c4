package tests

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/internal/testkit/pgcluster"
	"github.com/changeops/changeops/internal/testkit/testca"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/worker"
)

// The production path: a Temporal server persisting to PostgreSQL (the
// server and its schema tool built from go.temporal.io/server at the
// version docker-compose.yml deploys, PostgreSQL from Debian's packages),
// the namespace prepared by `changeops setup` as the compose one-shot does,
// and two `changeops worker` processes on one task queue sharing their data
// folder and Pulumi state, as `docker compose up --scale changeops=2` has
// them. Changes land on two stacks; one worker is killed in the middle of
// an up while the other works; every run must end as it would have on one
// healthy worker. The frontend requires mutual TLS with a CA the test
// makes: setup, the workers and the CLI connect through temporal.tls, and
// a client without a certificate of that CA is refused.
func TestProductionTwoWorkersOnPostgres(t *testing.T) {
	t.Parallel()
	started := time.Now()
	dir, err := os.MkdirTemp("", "changeops-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The whole test: the killed up alone takes a heartbeat timeout and
	// the 90 s grace of a lock changeops cannot read.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	certs := t.TempDir()
	ca, err := testca.New(certs, "ca")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.Issue("temporal", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := ca.Issue("changeops")
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Bin: filepath.Join(tools, "bin"), Dir: dir,
		TLS: &pgcluster.TLS{CAFile: ca.CertFile, CertFile: serverCert, KeyFile: serverKey}})
	if err != nil {
		t.Fatalf("start Temporal on PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		cluster.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "temporal.log"))
			t.Logf("temporal server log:\n%s", lastLines(string(b), 40))
		}
	})
	t.Logf("PostgreSQL, schema and Temporal server up in %s", time.Since(started).Round(time.Millisecond))

	// Pulumi state shared by the workers: the DIY backend on PostgreSQL
	// (a database of its own on the same server), the password from the
	// environment as libpq reads it (PGPASSWORD), not in the URL.
	if _, err := cluster.SQL(ctx, "postgres", "CREATE DATABASE pulumi"); err != nil {
		t.Fatal(err)
	}
	backend := fmt.Sprintf("postgres://temporal@127.0.0.1:%d/pulumi?sslmode=disable", cluster.PostgresPort())

	out := t.TempDir()
	page := func(stack string) string { return filepath.Join(out, stack+"-page.txt") }
	// Stacks a and b of project site: one backend holds both.
	content := func(stack, v string) map[string]string {
		return map[string]string{"stacks/" + stack + "/Pulumi." + stack + ".yaml": fmt.Sprintf("config:\n  site:outFile: %s\n  site:content: %s\n", page(stack), v)}
	}
	const branch = "e2e-production"
	remote := gittest.New(t, branch)
	files := map[string]string{}
	for _, s := range []string{"a", "b"} {
		for k, v := range siteProject("stacks/"+s, page(s), "v1") {
			if !strings.HasSuffix(k, "Pulumi.test.yaml") {
				files[k] = v
			}
		}
		for k, v := range content(s, "v1") {
			files[k] = v
		}
	}
	remote.Commit("Add stacks a and b", files)
	cfg := testConfig(t, remote.Bare, branch,
		config.Stack{Name: "pg-a", Path: "stacks/a", Stack: "a", Approval: config.ApprovalAuto},
		config.Stack{Name: "pg-b", Path: "stacks/b", Stack: "b", Approval: config.ApprovalAuto})
	cfg.Temporal.Address = cluster.Address()
	cfg.Temporal.TaskQueue = "changeops"
	// The address is an IP; the name checked is the certificate's DNS one.
	cfg.Temporal.TLS = &config.TemporalTLS{CAFile: ca.CertFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "localhost"}
	cfg.Pulumi.BackendURL = backend
	cfg.Log.Format = "json"
	pgPassword := "PGPASSWORD=temporal"

	// A worker on a cluster without the namespace refuses to start and
	// says what to run.
	early := exec.CommandContext(ctx, binary, "worker", "--config", writeConfig(t, cfg))
	early.Env = append(os.Environ(), cfg.Pulumi.PassphraseEnv+"="+cfg.Secrets.PulumiPassphrase, "CHANGEOPS_TOOLS="+tools)
	refused, err := early.CombinedOutput()
	if err == nil || !strings.Contains(string(refused), "temporal.namespace default does not exist: create it with `changeops setup") {
		t.Fatalf("worker before setup: %v\n%s", err, lastLines(string(refused), 10))
	}

	// The one-shot: create the namespace and register the search
	// attributes; a second run finds everything in place.
	for range 2 {
		// Without the worker's secrets in the environment: setup needs
		// only the temporal block.
		ready, err := exec.CommandContext(ctx, binary, "setup", "--config", writeConfig(t, cfg)).CombinedOutput()
		if err != nil || !strings.Contains(string(ready), "namespace default on "+cluster.Address()+" is ready") {
			t.Fatalf("changeops setup: %v\n%s", err, ready)
		}
	}
	quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	opts, err := worker.ClientOptions(cfg.Temporal, "")
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = quiet
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	// Nobody else gets in: not in plaintext, not over TLS without a client
	// certificate, not with a certificate of another CA.
	other, err := testca.New(t.TempDir(), "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, err := other.Issue("intruder")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  *config.TemporalTLS
	}{
		{"plaintext", nil},
		{"TLS without a client certificate", &config.TemporalTLS{CAFile: ca.CertFile, ServerName: "localhost"}},
		{"a client certificate of another CA", &config.TemporalTLS{CAFile: ca.CertFile, CertFile: otherCert, KeyFile: otherKey, ServerName: "localhost"}},
	} {
		tcfg := cfg.Temporal
		tcfg.TLS = tc.tls
		opts, err := worker.ClientOptions(tcfg, "")
		if err != nil {
			t.Fatal(err)
		}
		opts.Logger = quiet
		dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		intruder, err := client.DialContext(dctx, opts)
		cancel()
		if err == nil {
			intruder.Close()
			t.Errorf("%s: the frontend took the connection, want it refused", tc.name)
		} else {
			t.Logf("%s: refused: %v", tc.name, err)
		}
	}

	push := func(msg string, files ...map[string]string) string {
		all := map[string]string{}
		for _, f := range files {
			for k, v := range f {
				all[k] = v
			}
		}
		return contract.ChangeWorkflowID(branch, remote.Commit(msg, all))
	}
	succeeded := func(id string, limit time.Duration) {
		t.Helper()
		if run := waitState(t, c, id, limit, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack); run.State != contract.StateSucceeded {
			t.Fatalf("run %s ended %s: %s", id, run.State, run.Error)
		}
	}

	// Worker A pauses inside any update of stack a's page, so that it can
	// be killed there.
	wcfgA, wcfgB := *cfg, *cfg
	wcfgA.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", freePort())
	wcfgB.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", freePort())
	marks := filepath.Join(out, "marks")
	wa := startWorkerProcess(t, &wcfgA, "worker-a", []string{pgPassword, "CHANGEOPS_FILE_PAUSE=a-page", "CHANGEOPS_FILE_PAUSE_OP=update", "CHANGEOPS_FILE_MARKS=" + marks})
	waitWatching(t, c, branch)
	first := push("Both stacks to v2", content("a", "v2"), content("b", "v2"))
	succeeded(first, 2*time.Minute)

	// A takes stack a's next up and stops in it; B joins, and stack b's
	// change runs beside it on both workers.
	stuck := push("a to v3", content("a", "v3"))
	waitFor(t, 2*time.Minute, "worker A inside the update of a's page", func() (bool, string) {
		m, _ := os.ReadFile(marks)
		return strings.Contains(string(m), "update "+page("a")), string(m)
	})
	wb := startWorkerProcess(t, &wcfgB, "worker-b", []string{pgPassword})
	beside := push("b to v3", content("b", "v3"))
	succeeded(beside, 2*time.Minute)
	after := push("Both stacks to v4", content("a", "v4"), content("b", "v4"))
	wa.kill()

	// B finishes everything: the killed up once its heartbeat times out
	// (recovering the dead update's lock, after the 90 s a lock changeops
	// cannot read on PostgreSQL is given to be released by its holder),
	// then the change queued behind it on stack a.
	succeeded(stuck, 5*time.Minute)
	succeeded(after, 2*time.Minute)
	fileIs(t, page("a"), "v4")
	fileIs(t, page("b"), "v4")
	withPassword := *cfg
	withPassword.Pulumi.BackendURL = strings.Replace(backend, "temporal@", "temporal:temporal@", 1)
	for _, s := range []string{"a", "b"} {
		if n := resourcesOfType(t, &withPassword, "stacks/"+s, s, "changeops:index:File"); n != 1 {
			t.Errorf("stack %s: %d files in the state, want 1", s, n)
		}
	}
	// The command line reaches the cluster through the same tls block.
	if st, err := exec.CommandContext(ctx, binary, "status", "--config", writeConfig(t, cfg), first).CombinedOutput(); err != nil ||
		!regexp.MustCompile(`(?m)^state\s+succeeded$`).Match(st) {
		t.Errorf("changeops status over mutual TLS: %v\n%s", err, st)
	}
	if locks, err := cluster.SQL(ctx, "pulumi", "SELECT key FROM pulumi_state WHERE key LIKE '.pulumi/locks/%'"); err != nil || locks != "" {
		t.Errorf("locks left in the state backend: %q, %v", locks, err)
	}
	run, err := starter.Status(ctx, c, stuck)
	if err != nil {
		t.Fatal(err)
	}
	if ap := run.Status.Applies; len(ap) != 1 || len(ap[0].Recovered) == 0 {
		t.Errorf("apply of the killed up = %+v; want the dead update's lock named as recovered", ap)
	}
	if n := countActivities(t, c, stuck, "Apply"); n != 2 {
		t.Errorf("Apply of the killed up took %d attempts, want 2", n)
	}
	// Both workers ran change runs' steps, and SQL visibility answers the
	// search attributes changeops queries by.
	for _, w := range []*workerProcess{wa, wb} {
		if len(w.notes(t, first))+len(w.notes(t, beside))+len(w.notes(t, stuck))+len(w.notes(t, after)) == 0 {
			t.Errorf("%s announced no step of any run", w.log)
		}
	}
	waitFor(t, 30*time.Second, "4 succeeded runs of stack pg-a or pg-b in visibility", func() (bool, string) {
		runs, err := starter.List(ctx, c, starter.Filter{State: contract.StateSucceeded, Kind: starter.KindChange})
		if err != nil {
			return false, err.Error()
		}
		return len(runs) == 4, fmt.Sprintf("%d runs", len(runs))
	})
	t.Logf("production path on PostgreSQL: %s in all", time.Since(started).Round(time.Second))
}
