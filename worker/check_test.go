package worker

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

func TestCheckStacks(t *testing.T) {
	t.Parallel()
	remote := gittest.New(t, "main")
	remote.Commit("stacks", map[string]string{
		"stacks/web/Pulumi.yaml": "name: web\nruntime: yaml\n",
		"stacks/api/README.md":   "not a project\n",
	})
	url := remote.ServeHTTP("deploy", "t0ken")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name     string
		path     string
		password string
		want     string // empty: accepted
	}{
		{"project folder", "stacks/web", "t0ken", ""},
		{"missing folder", "stacks/wbe", "t0ken", `stacks[0] (s).path "stacks/wbe": no such folder on main`},
		{"folder without Pulumi.yaml", "stacks/api", "t0ken", `stacks[0] (s).path "stacks/api": the folder has no Pulumi.yaml`},
		{"refused credentials", "stacks/web", "wrong", "refused the credentials: check repo.username_env"},
		{"missing branch", "stacks/web", "t0ken", "stacks[0] (s): branch nope does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := &config.Config{
				Repo:   config.Repo{URL: url, Branch: "main"},
				Stacks: []config.Stack{{Name: "s", Path: c.path, Stack: "prod"}},
			}
			if c.name == "missing branch" {
				cfg.Stacks[0].Branch = "nope"
			}
			repo := gitrepo.New(gitrepo.Options{URL: url, Dir: filepath.Join(t.TempDir(), "cache.git"), Username: "deploy", Password: c.password})
			err := CheckStacks(context.Background(), cfg, map[string]*gitrepo.Repo{"": repo}, logger)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "wrong") {
				t.Errorf("error prints the password: %v", err)
			}
		})
	}
}
