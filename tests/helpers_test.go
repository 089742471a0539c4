package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gate/gatetest"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/worker"
)

// siteProject is a Pulumi YAML project that writes one file through
// changeops' provider, with a check script that verifies it by the stack's
// outputs.
func siteProject(dir, outFile, content string) map[string]string {
	return map[string]string{
		dir + "/Pulumi.yaml":      siteProgram(nil, fileResource("page", "${outFile}", "${content}")),
		dir + "/Pulumi.test.yaml": fmt.Sprintf("config:\n  site:outFile: %s\n  site:content: %q\n", outFile, content),
		dir + "/check.sh":         "#!/bin/sh\n# The file the stack says it wrote is there.\ntest -f \"$PULUMI_OUTPUT_PATH\" && echo \"found $PULUMI_OUTPUT_PATH\"\n",
	}
}

// siteProgram is the Pulumi.yaml of project "site": string config outFile,
// content and extraConfig, the given resources (one named page), and the
// page's path and digest as outputs.
func siteProgram(extraConfig []string, resources ...string) string {
	var b strings.Builder
	b.WriteString("name: site\nruntime: yaml\nconfig:\n")
	for _, k := range append([]string{"outFile", "content"}, extraConfig...) {
		fmt.Fprintf(&b, "  %s:\n    type: string\n", k)
	}
	b.WriteString("resources:\n")
	for _, r := range resources {
		b.WriteString(r)
	}
	b.WriteString("outputs:\n  path: ${page.path}\n  sha256: ${page.sha256}\n")
	return b.String()
}

// fileResource is a changeops:index:File; content is a YAML value, inline
// ("${content}") or a block ("fn::readFile: ./x").
func fileResource(name, path, content string) string {
	if strings.HasPrefix(content, "fn::") {
		content = "\n        " + content
	} else {
		content = " " + content
	}
	return fmt.Sprintf("  %s:\n    type: changeops:index:File\n    properties:\n      path: %s\n      content:%s\n", name, path, content)
}

// testConfig is a config for one test: its own branch, task queue, data
// folder and Pulumi state, the package's Temporal and PULUMI_HOME.
func testConfig(t *testing.T, url, branch string, stacks ...config.Stack) *config.Config {
	t.Helper()
	data := t.TempDir()
	for i := range stacks {
		s := &stacks[i]
		if s.ApprovalTimeout == 0 {
			s.ApprovalTimeout = config.Duration(time.Hour)
		}
		if s.VerifyTimeout == 0 {
			s.VerifyTimeout = config.Duration(30 * time.Second)
		}
		if s.DriftInterval == nil {
			// No schedule unless a test asks: an hourly check firing
			// mid-suite would enter the queues other tests watch.
			off := config.Duration(0)
			s.DriftInterval = &off
		}
	}
	cfg := &config.Config{
		Repo: config.Repo{URL: url, Branch: branch, PollInterval: config.Duration(time.Second)},
		Temporal: config.Temporal{
			Address: temporalURL, Namespace: "default", TaskQueue: "e2e-" + branch, UIURL: "http://127.0.0.1:8233",
			// One build for every worker of the suite, in this process
			// and as `changeops worker` processes (whose binary would
			// otherwise name another build): the first to start makes it
			// current, as a fresh install's first worker does.
			BuildID: "e2e",
		},
		Pulumi: config.Pulumi{
			BackendURL: "file://" + filepath.Join(data, "state"),
			Home:       pulumiHome,
			Root:       tools,
			// The provider's fault-injection switches (fault_test.go)
			// reach it only as variables pulumi.env allows.
			Env: []string{"CHANGEOPS_FILE_*"},
			// The toolchain's CLI and provider, and no downloads.
			PulumiCLI: config.PulumiCLI{CLI: filepath.Join(tools, "bin", "pulumi"), Offline: true},
		},
		Stacks:  stacks,
		People:  testPeople(),
		HTTP:    config.HTTP{Listen: "127.0.0.1:0"},
		DataDir: data,
		Secrets: config.Secrets{PulumiPassphrase: "e2e-passphrase"},
	}
	cfg.ApplyDefaults(data)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testPeople are the people of the end-to-end tests, each with a test key:
// alice writes the commits (gittest's author), dave merges some of them
// (their committer), bob, carol and mallory only decide. alice, bob and
// carol are pr-alice, pr-bob and pr-carol on the tests' Gitea.
func testPeople() []config.Person {
	people := []config.Person{
		gatetest.Person("alice", "alice@example.com"),
		gatetest.Person("bob", "bob@example.com"),
		gatetest.Person("carol"),
		gatetest.Person("dave", "dave@example.com"),
		gatetest.Person("mallory"),
	}
	for i := range people[:3] {
		people[i].Forge = []string{"pr-" + people[i].Name}
	}
	return people
}

// signedBy is name's decision as `changeops approve` makes it: signed
// with name's key.
func signedBy(name string, approve bool, comment string) starter.Decision {
	return starter.Decision{Approve: approve, Comment: comment, Person: name, Signer: gatetest.Signer(name)}
}

// keyFile writes name's test key where `changeops approve --key` reads it.
func keyFile(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".key")
	if err := os.WriteFile(path, gatetest.PrivateKeyPEM(name), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWorker runs a worker for cfg until the test ends.
func startWorker(t *testing.T, cfg *config.Config) client.Client {
	t.Helper()
	return startWorkerFull(t, cfg).Client()
}

// startWorkerFull is startWorker returning the worker itself.
func startWorkerFull(t *testing.T, cfg *config.Config) *worker.Worker {
	t.Helper()
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	return startWorkerLogging(t, cfg, out)
}

// startWorkerLogging runs a worker for cfg that logs to out, as JSON.
func startWorkerLogging(t *testing.T, cfg *config.Config, out io.Writer) *worker.Worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := worker.Start(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// waitFor polls cond until it holds or the deadline passes; what describes
// the last observation for the failure message.
func waitFor(t *testing.T, limit time.Duration, desc string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var what string
	for {
		var ok bool
		if ok, what = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", desc, limit, what)
		}
		time.Sleep(100 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// waitState waits until the run is in one of states and returns it.
func waitState(t *testing.T, c client.Client, id string, limit time.Duration, states ...string) starter.Run {
	t.Helper()
	var run starter.Run
	waitFor(t, limit, fmt.Sprintf("run %s in %v", id, states), func() (bool, string) {
		r, err := starter.Status(context.Background(), c, id)
		if err != nil {
			return false, err.Error()
		}
		run = r
		for _, s := range states {
			if r.State == s && r.Status != nil {
				return true, ""
			}
		}
		b, _ := json.Marshal(r)
		return false, string(b)
	})
	return run
}
