package config

import (
	"strings"
	"testing"
)

// FuzzParse feeds the loader arbitrary files: it never panics, a refusal
// always says something, and whatever it accepts passes validation again
// and names at least one stack with a folder inside the repository.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(good + "slack:\n  bot_token_env: T\n  channel: C1\n  socket_mode: true\n  app_token_env: A\n"))
	f.Add([]byte("repo: {url: x}\nstacks: [{name: a, path: b, stack: c, approval: auto}]\n"))
	f.Add([]byte("repo:\n  poll_interval: soon\n"))
	f.Add([]byte("stacks:\n  - verify: [{http: {url: 1}}, {no_changes: yes}]\n"))
	f.Add([]byte("repos: [{name: n, url: u, username_env: U, password_env: P}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		getenv := env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "p", "T": "xoxb-1", "A": "xapp-1", "U": "u", "P": "p"})
		cfg, err := Parse(data, "/etc/changeops", getenv)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("a refusal with no message")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a config that does not validate: %v", err)
		}
		if len(cfg.Stacks) == 0 {
			t.Fatal("accepted a config without stacks")
		}
		for _, s := range cfg.Stacks {
			if s.Path == "" || strings.HasPrefix(s.Path, "../") || strings.HasPrefix(s.Path, "/") {
				t.Fatalf("accepted stack path %q", s.Path)
			}
		}
	})
}
