package config

import (
	"strings"
	"testing"
)

// The refusals of validate.go leave the ordinary spellings alone: a user
// name in an ssh URL, scp-like addresses, paths, and folders whose names
// merely contain dots.
func TestAcceptedEdges(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, from, to string }{
		{"ssh URL with a user", "url: /srv/infra.git", "url: ssh://git@git.example.com:22/acme/infra.git"},
		{"scp-like address", "url: /srv/infra.git", "url: git@github.com:acme/infra.git"},
		{"https URL", "url: /srv/infra.git", "url: https://git.example.com/acme/infra.git"},
		{"@ in the path of an https URL", "url: /srv/infra.git", "url: https://git.example.com/@acme/infra.git"},
		{"file URL", "url: /srv/infra.git", "url: file:///srv/infra.git"},
		{"dots in a folder name", "path: stacks/web", "path: stacks/..web../v1.2"},
		{"a redundant ./", "path: stacks/web", "path: ./stacks/web"},
		{"https check with a status", `{url: "http://127.0.0.1:8080/healthz"}`, `{url: "https://web.example.com/healthz", status: 204}`},
		{"zero timeouts take the defaults", "stack: prod", "stack: prod\n    approval_timeout: 0s\n    verify_timeout: 0s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(good, c.from) {
				t.Fatalf("good has no %q", c.from)
			}
			cfg, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)), "/etc/changeops", withPassphrase)
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "a redundant ./" && cfg.Stacks[0].Path != "stacks/web" {
				t.Errorf("path %q, want it cleaned to stacks/web", cfg.Stacks[0].Path)
			}
			if cfg.HTTP.MaxConcurrent != DefaultMaxConcurrent {
				t.Errorf("http.max_concurrent = %d, want the default %d", cfg.HTTP.MaxConcurrent, DefaultMaxConcurrent)
			}
		})
	}
}
