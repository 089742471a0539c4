package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const good = `
repo:
  url: /srv/infra.git
people:
  - name: bob
    slack: [U0BOB]
    emails: [bob@example.com]
stacks:
  - name: web
    path: stacks/web
    stack: prod
    approvers: [bob]
    verify:
      - http: {url: "http://127.0.0.1:8080/healthz"}
`

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

var withPassphrase = env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "s3cret"})

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(good), "/etc/changeops", withPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Stacks[0]
	checks := []struct {
		field     string
		got, want any
	}{
		{"repo.branch", cfg.Repo.Branch, "main"},
		{"repo.poll_interval", cfg.Repo.PollInterval.D(), 30 * time.Second},
		{"temporal.address", cfg.Temporal.Address, "localhost:7233"},
		{"temporal.task_queue", cfg.Temporal.TaskQueue, "changeops"},
		{"data_dir", cfg.DataDir, "/etc/changeops/.changeops/data"},
		{"pulumi.backend_url", cfg.Pulumi.BackendURL, "file:///etc/changeops/.changeops/data/pulumi-state"},
		{"stacks[0].approval", s.Approval, ApprovalManual},
		{"stacks[0].approval_timeout", s.ApprovalTimeout.D(), 24 * time.Hour},
		{"stacks[0].verify_timeout", s.VerifyTimeout.D(), 5 * time.Minute},
		{"stacks[0].verify[0].http.status", s.Verify[0].HTTP.Status, 200},
		{"temporal.worker_stop_timeout", cfg.Temporal.WorkerStopTimeout.D(), time.Minute},
		{"log.format", cfg.Log.Format, "text"},
		{"slack.group_cache_ttl", cfg.Slack.GroupCacheTTL.D(), time.Minute},
		{"secret", cfg.Secrets.PulumiPassphrase, "s3cret"},
		{"stacks[0].drift", s.Drift, DriftNotify},
		{"stacks[0].drift_interval", s.DriftEvery(), time.Hour},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		env        func(string) string
		want       []string // every fragment must appear in the error
	}{
		{"unknown field", good + "  - name: api\n    path: stacks/api\n    stack: prod\n    aproval: auto\n", withPassphrase,
			[]string{"field aproval not found", "docs/configuration.md"}},
		{"bad duration", strings.Replace(good, "url:", "poll_interval: soon\n  url:", 1), withPassphrase,
			[]string{`"soon" is not a duration`, "30s"}},
		{"missing secret", good, env(nil),
			[]string{"pulumi.passphrase_env names environment variable PULUMI_CONFIG_PASSPHRASE, which is not set"}},
		{"missing git secret", strings.Replace(good, "url: /srv/infra.git", "url: https://git.example.com/infra.git\n  username_env: GIT_USER\n  password_env: GIT_TOKEN", 1),
			env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "GIT_USER": "u"}),
			[]string{"repo.password_env names environment variable GIT_TOKEN"}},
		{"bad policy", strings.Replace(good, "stack: prod", "stack: prod\n    approval: sometimes", 1), withPassphrase,
			[]string{`stacks[0] (web).approval "sometimes" is not a policy: use manual, auto, on-destructive or pull-request`}},
		{"pull-request approval without a forge", strings.Replace(good, "stack: prod", "stack: prod\n    approval: pull-request", 1), withPassphrase,
			[]string{"stacks[0] (web).approval is pull-request, but its repository has no forge"}},
		{"unknown forge", strings.Replace(good, "url: /srv/infra.git", "url: https://git.example.com/org/infra.git\n  forge: {kind: bitbucket, url: https://bitbucket.org, token_env: BB_TOKEN}", 1),
			env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "s3cret", "BB_TOKEN": "t"}),
			[]string{`repo.forge.kind "bitbucket" is not a forge: use gitea (also for Forgejo), github or gitlab`}},
		{"forge without a token", strings.Replace(good, "url: /srv/infra.git", "url: https://git.example.com/org/infra.git\n  forge: {kind: gitea, url: git.example.com}", 1), withPassphrase,
			[]string{`repo.forge.url "git.example.com" is not an http(s) URL`, "repo.forge.token_env is empty"}},
		{"forge login of two people", strings.Replace(good, "emails: [bob@example.com]", "emails: [bob@example.com]\n    forge: [bobby]\n  - name: carol\n    slack: [U0CAROL]\n    forge: [Bobby]", 1), withPassphrase,
			[]string{`people[1] (carol): forge login "Bobby" is also listed for bob`}},
		{"no approvers", strings.Replace(good, "    approvers: [bob]\n", "", 1), withPassphrase,
			[]string{"stacks[0] (web).approvers is empty but approval is manual"}},
		{"duplicate name", good + "  - name: web\n    path: stacks/web2\n    stack: prod\n    approval: auto\n", withPassphrase,
			[]string{`stacks[1] (web).name "web" is used twice`}},
		{"path outside repo", strings.Replace(good, "path: stacks/web", "path: ../web", 1), withPassphrase,
			[]string{`stacks[0] (web).path "../web" must be a folder inside the repository`}},
		{"missing stack", strings.Replace(good, "    stack: prod\n", "", 1), withPassphrase,
			[]string{"stacks[0] (web).stack is empty"}},
		{"two checks in one", strings.Replace(good, "- http: {url: \"http://127.0.0.1:8080/healthz\"}", "- no_changes: true\n        command: [true]", 1), withPassphrase,
			[]string{"stacks[0] (web).verify[0] must set exactly one of http, command, no_changes"}},
		{"batch out of range", strings.Replace(good, "stack: prod", "stack: prod\n    approval: auto\n    batch: 101", 1), withPassphrase,
			[]string{"stacks[0] (web).batch 101: use 2 to 100"}},
		{"bad drift policy", strings.Replace(good, "stack: prod", "stack: prod\n    drift: fix", 1), withPassphrase,
			[]string{`stacks[0] (web).drift "fix" is not a policy: use notify, approve or heal`}},
		{"drift interval too short", strings.Replace(good, "stack: prod", "stack: prod\n    drift_interval: 1s", 1), withPassphrase,
			[]string{"stacks[0] (web).drift_interval 1s: use 0 (no schedule) or 10s or more"}},
		{"drift approve without approvers", strings.Replace(strings.Replace(good, "    approvers: [bob]\n", "", 1), "stack: prod", "stack: prod\n    approval: auto\n    drift: approve", 1), withPassphrase,
			[]string{"stacks[0] (web).approvers is empty but drift is approve"}},
		{"password in the backend URL", good + "pulumi:\n  backend_url: postgres://changeops:hunter2@db:5432/pulumi\n", withPassphrase,
			[]string{"pulumi.backend_url carries a password", "PGPASSWORD"}},
		{"no repo", "stacks: []\n", withPassphrase,
			[]string{"repo.url is empty", "stacks is empty"}},
		{"quote in a name", strings.Replace(good, "name: web", "name: \"web'x\"", 1), withPassphrase,
			[]string{"contains a slash, space or quote"}},
		{"unknown repo", strings.Replace(good, "stack: prod", "stack: prod\n    repo: network", 1), withPassphrase,
			[]string{`stacks[0] (web).repo "network" is not in repos`}},
		{"unnamed repos entry", good + "repos:\n  - url: /srv/net.git\n", withPassphrase,
			[]string{"repos[0].name is empty"}},
		{"slack without a signing secret", good + "slack:\n  bot_token_env: SLACK_BOT_TOKEN\n  channel: C1\n",
			env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "SLACK_BOT_TOKEN": "xoxb-1"}),
			[]string{"slack.signing_secret_env names no signing secret", "socket_mode"}},
		{"slack without a channel", good + "slack:\n  bot_token_env: SLACK_BOT_TOKEN\n  signing_secret_env: SLACK_SIGNING_SECRET\n",
			env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}),
			[]string{"slack.channel is empty"}},
		{"socket mode without an app token", good + "slack:\n  bot_token_env: SLACK_BOT_TOKEN\n  channel: C1\n  socket_mode: true\n",
			env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "SLACK_BOT_TOKEN": "xoxb-1"}),
			[]string{"slack.socket_mode is on but slack.app_token_env is empty", "xapp-"}},
		{"socket mode app token unset", good + "slack:\n  bot_token_env: SLACK_BOT_TOKEN\n  channel: C1\n  socket_mode: true\n  app_token_env: SLACK_APP_TOKEN\n",
			env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "SLACK_BOT_TOKEN": "xoxb-1"}),
			[]string{"slack.app_token_env names environment variable SLACK_APP_TOKEN, which is not set"}},
		{"approver nobody can be", strings.Replace(good, "approvers: [bob]", "approvers: [bob, carol]", 1), withPassphrase,
			[]string{`stacks[0] (web).approvers[1] "carol" is neither a people entry nor a Slack user`, "add a people entry named carol"}},
		{"person with no way to decide", strings.Replace(good, "stacks:", "  - name: carol\n    emails: [carol@example.com]\nstacks:", 1), withPassphrase,
			[]string{"people[1] (carol) has neither slack nor keys"}},
		{"identity of two people", strings.Replace(good, "    emails: [bob@example.com]\n", "    emails: [bob@example.com]\n  - name: mallory\n    slack: [U0MAL]\n    emails: [Bob@Example.com]\n", 1), withPassphrase,
			[]string{`people[1] (mallory): email "Bob@Example.com" is also listed for bob`}},
		{"bad slack user", strings.Replace(good, "slack: [U0BOB]", "slack: [bob]", 1), withPassphrase,
			[]string{`people[0] (bob).slack[0] "bob" is not a Slack user ID`}},
		{"bad key", strings.Replace(good, "slack: [U0BOB]", "keys: [\"ssh-ed25519 not-base64\"]", 1), withPassphrase,
			[]string{"people[0] (bob).keys[0] is not an SSH public key"}},
		{"repos entry secret", good + "repos:\n  - name: net\n    url: https://git.example.com/net.git\n    username_env: NET_USER\n    password_env: NET_TOKEN\n", withPassphrase,
			[]string{"repos[0].username_env names environment variable NET_USER"}},
		{"password in the repo URL", strings.Replace(good, "url: /srv/infra.git", "url: https://bob:hunter2@git.example.com/infra.git", 1), withPassphrase,
			[]string{"repo.url carries credentials", "repo.username_env and repo.password_env"}},
		{"token as the user of a repos URL", good + "repos:\n  - name: net\n    url: https://hunter2@git.example.com/net.git\n", withPassphrase,
			[]string{"repos[0].url carries credentials"}},
		{"password in an ssh URL", strings.Replace(good, "url: /srv/infra.git", "url: ssh://git:hunter2@git.example.com/infra.git", 1), withPassphrase,
			[]string{"repo.url carries a password"}},
		{"path climbing out midway", strings.Replace(good, "path: stacks/web", "path: stacks/../../etc", 1), withPassphrase,
			[]string{`stacks[0] (web).path "stacks/../../etc" has a .. segment`}},
		{"path that is the parent", strings.Replace(good, "path: stacks/web", "path: stacks/web/../../..", 1), withPassphrase,
			[]string{`stacks[0] (web).path "stacks/web/../../.." has a .. segment`}},
		{"negative approval timeout", strings.Replace(good, "stack: prod", "stack: prod\n    approval_timeout: -1h", 1), withPassphrase,
			[]string{"stacks[0] (web).approval_timeout -1h0m0s is negative"}},
		{"negative verify timeout", strings.Replace(good, "stack: prod", "stack: prod\n    verify_timeout: -5m", 1), withPassphrase,
			[]string{"stacks[0] (web).verify_timeout -5m0s is negative"}},
		{"negative poll interval", strings.Replace(good, "url: /srv/infra.git", "url: /srv/infra.git\n  poll_interval: -30s", 1), withPassphrase,
			[]string{"repo.poll_interval -30s is below 1s"}},
		{"negative max body", good + "webhooks:\n  max_body: -1\n", withPassphrase,
			[]string{"webhooks.max_body -1 is negative"}},
		{"negative worker stop timeout", good + "temporal:\n  worker_stop_timeout: -1m\n", withPassphrase,
			[]string{"temporal.worker_stop_timeout -1m0s is negative"}},
		{"negative http concurrency", good + "http:\n  max_concurrent: -1\n", withPassphrase,
			[]string{"http.max_concurrent -1 is negative"}},
		{"metrics on the main listener", good + "http:\n  listen: 127.0.0.1:8088\n  metrics_listen: 127.0.0.1:8088\n", withPassphrase,
			[]string{"http.metrics_listen 127.0.0.1:8088 is also http.listen"}},
		{"empty approver", strings.Replace(good, "approvers: [bob]", `approvers: [bob, ""]`, 1), withPassphrase,
			[]string{"stacks[0] (web).approvers[1] is empty"}},
		{"empty command", strings.Replace(good, "- http: {url: \"http://127.0.0.1:8080/healthz\"}", `- command: [""]`, 1), withPassphrase,
			[]string{"stacks[0] (web).verify[0].command[0] is empty"}},
		{"relative check URL", strings.Replace(good, "http://127.0.0.1:8080/healthz", "/healthz", 1), withPassphrase,
			[]string{`stacks[0] (web).verify[0].http.url "/healthz" is not an absolute http(s) URL`}},
		{"check URL of another scheme", strings.Replace(good, "http://127.0.0.1:8080/healthz", "ftp://bob:hunter2@127.0.0.1/healthz", 1), withPassphrase,
			[]string{`stacks[0] (web).verify[0].http.url "ftp://bob:xxxxx@127.0.0.1/healthz" is not an absolute http(s) URL`}},
		{"group of strangers", good + "groups:\n  - name: dba\n    members: [eve]\n", withPassphrase,
			[]string{`groups[0].members[0] "eve" is neither a people entry nor a Slack user ID`}},
		{"policy path outside the repository", good + "policy:\n  path: ../policies\n", withPassphrase,
			[]string{`policy.path "../policies" must be a folder inside the repository`}},
		{"check status out of range", strings.Replace(good, "/healthz\"}", "/healthz\", status: 700}", 1), withPassphrase,
			[]string{"stacks[0] (web).verify[0].http.status 700 is not an HTTP status"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(c.yaml), "/etc/changeops", c.env)
			if err == nil {
				t.Fatalf("accepted, want an error naming %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q echoes a password", err)
			}
		})
	}
}

// drift_interval: 0 turns the schedule off; absent means the default.
// Every approval policy batches: a batch that needs an approval asks once
// for all its changes (docs/batching.md#approvals).
func TestBatchOnEveryApproval(t *testing.T) {
	for _, approval := range []string{ApprovalManual, ApprovalOnDestructive, ApprovalAuto} {
		cfg, err := Parse([]byte(strings.Replace(good, "stack: prod", "stack: prod\n    batch: 8\n    approval: "+approval, 1)), "/etc/changeops", withPassphrase)
		if err != nil {
			t.Fatalf("batch: 8 with approval: %s: %v", approval, err)
		}
		if got := cfg.Stacks[0].Batch; got != 8 {
			t.Errorf("approval: %s: batch = %d, want 8", approval, got)
		}
	}
}

func TestDriftIntervalZeroIsOff(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(good, "stack: prod", "stack: prod\n    drift_interval: 0\n    drift: heal", 1)), "/etc", withPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Stacks[0].DriftEvery(); got != 0 {
		t.Errorf("drift_interval 0: DriftEvery = %s, want 0 (no schedule)", got)
	}
	if cfg.Stacks[0].Drift != DriftHeal {
		t.Errorf("drift = %q, want heal", cfg.Stacks[0].Drift)
	}
}

func TestSlackSocketModeNeedsNoSigningSecret(t *testing.T) {
	cfg, err := Parse([]byte(good+"slack:\n  bot_token_env: T\n  channel: C1\n  socket_mode: true\n  app_token_env: A\n"), "/",
		env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "T": "xoxb-1", "A": "xapp-1"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secrets.SlackAppToken != "xapp-1" || cfg.Slack.GroupCacheTTL.D() != time.Minute {
		t.Errorf("app token %q, group_cache_ttl %s", cfg.Secrets.SlackAppToken, cfg.Slack.GroupCacheTTL.D())
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := Parse([]byte(good), "/", withPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(format, cfg); strings.Contains(out, "s3cret") {
			t.Errorf("%s of the config prints the passphrase: %s", format, out)
		}
	}
}

func TestStacksTouched(t *testing.T) {
	t.Parallel()
	cfg := &Config{Repo: Repo{Branch: "main"}, Stacks: []Stack{
		{Name: "web", Path: "stacks/web", AlsoWatch: []string{"modules/**"}},
		{Name: "web2", Path: "stacks/web2"},
		{Name: "api", Path: "stacks/api", AlsoWatch: []string{"shared/*.yaml"}},
		{Name: "web-staging", Path: "stacks/web", Branch: "staging", AlsoWatch: []string{"modules/**"}},
		{Name: "vpc", Path: "stacks/web", Repo: "network"},
	}, Repos: []Repo{{Name: "network", Branch: "prod"}}}
	names := func(ss []Stack) string {
		var n []string
		for _, s := range ss {
			n = append(n, s.Name)
		}
		return strings.Join(n, ",")
	}
	cases := []struct {
		repo, branch string
		paths        []string
		want         string
	}{
		{"", "main", []string{"stacks/web/index.html"}, "web"},
		{"", "main", []string{"stacks/web2/Pulumi.yaml"}, "web2"}, // a prefix of the name is not the folder
		{"", "main", []string{"modules/net/vpc.yaml"}, "web"},
		{"", "main", []string{"shared/tags.yaml", "stacks/web/x"}, "api,web"},
		{"", "main", []string{"shared/deep/tags.yaml"}, ""}, // * does not cross folders
		{"", "main", []string{"README.md"}, ""},
		{"", "staging", []string{"modules/net/vpc.yaml"}, "web-staging"},
		{"network", "prod", []string{"stacks/web/main.yaml"}, "vpc"}, // same folder, other repository
	}
	for _, c := range cases {
		if got := names(cfg.StacksTouched(c.repo, c.branch, c.paths)); got != c.want {
			t.Errorf("StacksTouched(%s, %v) = %q, want %q", c.branch, c.paths, got, c.want)
		}
	}
	want := []Watch{{"", "main"}, {"", "staging"}, {"network", "prod"}}
	if got := cfg.Watches(); !slices.Equal(got, want) {
		t.Errorf("Watches() = %v, want %v", got, want)
	}
}
