package tests

import (
	"bytes"
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

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"google.golang.org/protobuf/proto"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// Repository code runs on the worker before anyone approves: a stack's
// program and its command checks. Here the worker, a `changeops worker`
// process, holds secrets of its own (the git password, which can push;
// the Slack bot token and signing secret; a webhook secret) and a database
// URL nobody allowed; the program reads /proc/self/environ into a file's
// content (so the plan diff shows it) and into an output, and the check
// prints its environment. The run succeeds as a user expects, and no
// secret of the worker's appears in what the program and the check saw,
// the run's status, any workflow history of the task queue, the worker's
// log or Slack, while the variables pulumi.env (AWS_*) and stacks[].env
// (SITE_*) allow do appear there, so the test cannot pass by seeing
// nothing. A variable pulumi.env allows that holds a copy of the git
// password is withheld too, and the worker says so.
func TestRepositoryCodeSeesNoWorkerSecret(t *testing.T) {
	t.Parallel()
	const branch = "e2e-secrets"
	const gitUser, gitPassword = "changeops-e2e-user", "git-password-e2e-5d1c"
	secrets := map[string]string{
		"GIT_USERNAME":             gitUser,
		"GIT_TOKEN":                gitPassword,
		"SLACK_BOT_TOKEN":          slackToken,
		"SLACK_SIGNING_SECRET":     slackSecret,
		"CHANGEOPS_WEBHOOK_SECRET": "webhook-secret-e2e-9b2e",
	}
	// Not the worker's secrets, but nothing allows them either.
	others := map[string]string{"DATABASE_URL": "postgres://app:db-password-e2e-41aa@db/app"}
	// Allowed: by pulumi.env, by the stack's env, and one that pulumi.env
	// matches but that holds the git password.
	allowed := map[string]string{"AWS_REGION": "test-region", "SITE_FLAVOUR": "flavour-e2e-blue"}
	const copied = "AWS_SESSION_TOKEN"

	dir := t.TempDir()
	page, checkEnv := filepath.Join(dir, "page.txt"), filepath.Join(dir, "check-env.txt")
	remote := gittest.New(t, branch)
	// The program's environment as a file's content and, one variable an
	// entry, as an output: the diff shows a long string's first 150
	// characters only, but every entry of a list.
	program := fmt.Sprintf(`name: leak
runtime: yaml
variables:
  entries:
    fn::split:
      - "\0"
      - fn::readFile: /proc/self/environ
resources:
  page:
    type: changeops:index:File
    properties:
      path: %s
      content:
        fn::join:
          - " | "
          - ${entries}
outputs:
  path: ${page.path}
  environ: ${entries}
`, page)
	sha := remote.Commit("Read what the worker holds", map[string]string{
		"stacks/leak/Pulumi.yaml":      program,
		"stacks/leak/Pulumi.test.yaml": "config: {}\n",
		// NUL-separated in the file (the check's own variables, exactly),
		// one a line on its output (the check's detail).
		"stacks/leak/printenv.sh": "#!/bin/sh\nenv -0 > " + checkEnv + "\nenv\n",
	})
	url := remote.ServeHTTP(gitUser, gitPassword)
	cfg := testConfig(t, url, branch, config.Stack{
		Name: "leak", Path: "stacks/leak", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{Command: []string{"./printenv.sh"}}},
		Env:    []string{"SITE_*"},
	})
	cfg.Repo.Initial = config.InitialDeploy
	cfg.Repo.UsernameEnv, cfg.Repo.PasswordEnv = "GIT_USERNAME", "GIT_TOKEN"
	cfg.Webhooks.GenericSecretEnv = "CHANGEOPS_WEBHOOK_SECRET"
	cfg.Pulumi.Env = append(cfg.Pulumi.Env, "AWS_*")
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", freePort())
	cfg.Log.Format = "json"
	ws := slackWorkspace(t, cfg)

	var env []string
	for _, m := range []map[string]string{secrets, others, allowed, {copied: gitPassword}} {
		for k, v := range m {
			env = append(env, k+"="+v)
		}
	}
	w := startWorkerProcess(t, cfg, "worker", env)
	c, err := client.Dial(client.Options{HostPort: temporalURL, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if v := run.Status.Verifications; len(v) != 1 || !v[0].Passed {
		t.Errorf("verifications = %+v, want the check passed", v)
	}

	// Every place repository code's output can reach, and what it saw.
	places := map[string]string{}
	read := func(name, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		places[name] = string(b)
	}
	read("the program's environment (the file it wrote)", page)
	read("the check's environment", checkEnv)
	read("the worker's log", w.log)
	status, _ := json.Marshal(run)
	places["the run's status"] = string(status)
	places["the plan diff"] = run.Status.Plans[0].Diff
	_, places["changeops status"], _ = changeops(t, "status", sha[:8], "--json")
	places["the workflow histories of the task queue"] = histories(t, c, cfg.Temporal.TaskQueue, id)
	var slack strings.Builder
	ws.mu.Lock()
	for _, m := range ws.messages {
		fmt.Fprintf(&slack, "%s\n%s\n", m.Text, m.Blocks)
	}
	ws.mu.Unlock()
	places["Slack"] = slack.String()

	for place, text := range places {
		for name, v := range secrets {
			if strings.Contains(text, v) {
				t.Errorf("%s holds the value of %s", place, name)
			}
		}
		if strings.Contains(text, others["DATABASE_URL"]) {
			t.Errorf("%s holds DATABASE_URL, which nothing allows", place)
		}
	}
	// What was allowed got through, to the program, the check, the plan
	// and its records: the mechanism works, it does not just hide all.
	for _, place := range []string{"the program's environment (the file it wrote)", "the check's environment", "the plan diff",
		"the run's status", "the workflow histories of the task queue"} {
		for k, v := range allowed {
			if !strings.Contains(places[place], k+"="+v) {
				t.Errorf("%s lacks %s=%s, which the config allows", place, k, v)
			}
		}
	}
	if !strings.Contains(places["Slack"], "test-region") {
		t.Errorf("Slack's plan message does not show the program's environment, so its check above proves nothing:\n%s", places["Slack"])
	}
	seen := map[string]map[string]string{
		"the program": vars(strings.Split(places["the program's environment (the file it wrote)"], " | ")),
		"the check":   vars(strings.Split(places["the check's environment"], "\x00")),
	}
	for who, got := range seen {
		for _, name := range []string{"GIT_USERNAME", "GIT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "CHANGEOPS_WEBHOOK_SECRET", "DATABASE_URL", copied} {
			if _, ok := got[name]; ok {
				t.Errorf("%s got %s", who, name)
			}
		}
	}
	// A check needs no passphrase; the program's engine does (a limit
	// docs/security.md states).
	if _, ok := seen["the check"]["PULUMI_CONFIG_PASSPHRASE"]; ok {
		t.Error("the check got the Pulumi passphrase")
	}
	if !strings.Contains(places["the worker's log"], copied) || !strings.Contains(places["the worker's log"], "withheld") {
		t.Errorf("the worker did not warn that %s is withheld", copied)
	}
}

// vars are NAME=value entries as a map.
func vars(entries []string) map[string]string {
	out := map[string]string{}
	for _, e := range entries {
		if k, v, ok := strings.Cut(e, "="); ok {
			out[k] = v
		}
	}
	return out
}

// histories is every event of every workflow on the task queue (and of
// the run id, whatever visibility says yet), as the bytes the server
// keeps: payloads are JSON inside them, so a secret in any input, result,
// query answer or failure shows as itself.
func histories(t *testing.T, c client.Client, queue, id string) string {
	t.Helper()
	ctx := context.Background()
	ids := []string{id}
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("TaskQueue = '%s'", queue)})
	if err != nil {
		t.Fatalf("list the workflows of %s: %v", queue, err)
	}
	for _, e := range resp.GetExecutions() {
		ids = append(ids, e.GetExecution().GetWorkflowId())
	}
	var all bytes.Buffer
	for _, wid := range ids {
		iter := c.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			e, err := iter.Next()
			if err != nil {
				t.Fatalf("history of %s: %v", wid, err)
			}
			b, err := proto.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			all.Write(b)
		}
	}
	return all.String()
}
