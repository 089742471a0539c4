package config

import (
	"strings"
	"testing"
)

// A config with every kind of secret the worker holds.
const withSecrets = `
repo:
  url: https://git.example.com/infra.git
  username_env: GIT_USERNAME
  password_env: GIT_TOKEN
repos:
  - name: network
    url: https://git.example.com/network.git
    username_env: NET_USER
    password_env: NET_TOKEN
slack:
  bot_token_env: SLACK_BOT_TOKEN
  signing_secret_env: SLACK_SIGNING_SECRET
  channel: C0123
webhooks:
  generic_secret_env: CHANGEOPS_WEBHOOK_SECRET
  github_secret_env: GITHUB_WEBHOOK_SECRET
pulumi:
  env: [AWS_*, ARM_CLIENT_ID]
stacks:
  - name: web
    path: stacks/web
    stack: prod
    approval: auto
    env: [SITE_*]
`

var allSecrets = env(map[string]string{
	"GIT_USERNAME": "u", "GIT_TOKEN": "t", "NET_USER": "u", "NET_TOKEN": "t", "SLACK_BOT_TOKEN": "xoxb",
	"SLACK_SIGNING_SECRET": "s", "CHANGEOPS_WEBHOOK_SECRET": "w", "GITHUB_WEBHOOK_SECRET": "g", "PULUMI_CONFIG_PASSPHRASE": "p",
})

// Every *_env field is a secret of the worker's, named with its field.
func TestSecretVarsNameEveryEnvField(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(withSecrets), "/etc/changeops", allSecrets)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.SecretVars()
	want := map[string]string{
		"GIT_USERNAME": "repo.username_env", "GIT_TOKEN": "repo.password_env",
		"NET_USER": "repos[0].username_env", "NET_TOKEN": "repos[0].password_env",
		"SLACK_BOT_TOKEN": "slack.bot_token_env", "SLACK_SIGNING_SECRET": "slack.signing_secret_env",
		"CHANGEOPS_WEBHOOK_SECRET": "webhooks.generic_secret_env", "GITHUB_WEBHOOK_SECRET": "webhooks.github_secret_env",
		"PULUMI_CONFIG_PASSPHRASE": "pulumi.passphrase_env",
	}
	for name, field := range want {
		if got[name] != field {
			t.Errorf("SecretVars()[%s] = %q, want %q", name, got[name], field)
		}
	}
	for name, field := range got {
		if _, ok := want[name]; !ok && !strings.HasSuffix(field, "_env") {
			t.Errorf("SecretVars() has %s from %s, which is not an *_env field", name, field)
		}
	}
	if s := cfg.Stacks[0]; len(cfg.Pulumi.Env) != 2 || len(s.Env) != 1 || s.Env[0] != "SITE_*" {
		t.Errorf("pulumi.env %v, stacks[0].env %v", cfg.Pulumi.Env, s.Env)
	}
}

// A pattern must be one, and must not match a variable holding a secret
// of the worker's: the file says what programs get.
func TestEnvPatternsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"star", "env: [AWS_*, ARM_CLIENT_ID]", `env: ["*"]`, []string{
			`pulumi.env[0] "*" matches`, "GIT_TOKEN (repo.password_env)", "SLACK_BOT_TOKEN (slack.bot_token_env)",
			"NET_TOKEN (repos[0].password_env)", "CHANGEOPS_WEBHOOK_SECRET (webhooks.generic_secret_env)",
			"PULUMI_CONFIG_PASSPHRASE (pulumi.passphrase_env)", "narrow the pattern"}},
		{"a stack's", "env: [SITE_*]", "env: [SITE_*, SLACK_*]", []string{
			`stacks[0] (web).env[1] "SLACK_*" matches SLACK_BOT_TOKEN (slack.bot_token_env), SLACK_SIGNING_SECRET (slack.signing_secret_env)`}},
		{"passphrase", "env: [AWS_*, ARM_CLIENT_ID]", "env: [PULUMI_*]", []string{
			`pulumi.env[0] "PULUMI_*" matches PULUMI_CONFIG_PASSPHRASE`, "as PULUMI_CONFIG_PASSPHRASE already"}},
		{"bad glob", "env: [SITE_*]", `env: ["SITE_["]`, []string{`stacks[0] (web).env[0] "SITE_[" is not a pattern of variable names`}},
		{"empty", "env: [SITE_*]", `env: [""]`, []string{`stacks[0] (web).env[0] "" is not a pattern`}},
		{"assignment", "env: [AWS_*, ARM_CLIENT_ID]", `env: ["AWS_REGION=x"]`, []string{`pulumi.env[0] "AWS_REGION=x" is not a pattern`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(strings.Replace(withSecrets, tc.from, tc.to, 1)), "/etc/changeops", allSecrets)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
