package pulumienv

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestBackendURLSkipsSidecars(t *testing.T) {
	for in, want := range map[string]string{
		"file:///srv/state":                 "file:///srv/state?metadata=skip",
		"file:///srv/state?no_tmp_dir=true": "file:///srv/state?no_tmp_dir=true&metadata=skip",
		"file:///srv/state?metadata=skip":   "file:///srv/state?metadata=skip",
		"s3://bucket?region=eu-west-1":      "s3://bucket?region=eu-west-1",
		"postgres://u@db/pulumi":            "postgres://u@db/pulumi",
	} {
		if got := BackendURL(in); got != want {
			t.Errorf("BackendURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// worker is a worker's environment: base variables, cloud credentials,
// and its own secrets (named by *_env fields), one of them copied under a
// name that pulumi.env allows.
var worker = []string{
	"PATH=/usr/bin:/bin", "HOME=/home/changeops", "USER=changeops", "LANG=C.UTF-8", "LC_TIME=C", "TMPDIR=/tmp/w",
	"AWS_REGION=eu-west-1", "AWS_SECRET_ACCESS_KEY=aws-secret", "ARM_CLIENT_ID=arm-id", "SITE_FLAVOUR=blue",
	"SLACK_BOT_TOKEN=xoxb-worker", "SLACK_SIGNING_SECRET=signing", "GIT_TOKEN=git-token", "GIT_USERNAME=changeops",
	"WEBHOOK_SECRET=hook", "PULUMI_CONFIG_PASSPHRASE=pass", "GITHUB_TOKEN=git-token", "TEMPORAL_DB_PASSWORD=db",
	"PGPASSWORD=pg", "PGSSLMODE=require",
}

var secretNames = []string{"GIT_TOKEN", "GIT_USERNAME", "PULUMI_CONFIG_PASSPHRASE", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "WEBHOOK_SECRET"}

func TestStackVarsAreBuiltOnPurpose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		backend  string
		allow    []string
		stackEnv []string
		want     []string // variables of the worker's the stack gets
		withheld []string
	}{
		{name: "nothing allowed", backend: "file:///state"},
		{name: "cloud credentials", backend: "file:///state", allow: []string{"AWS_*", "ARM_*"},
			want: []string{"ARM_CLIENT_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY"}},
		{name: "per stack", backend: "file:///state", allow: []string{"AWS_REGION"}, stackEnv: []string{"SITE_*"},
			want: []string{"AWS_REGION", "SITE_FLAVOUR"}},
		// Everything, as a config could not say (Validate refuses a
		// pattern matching a secret's name): still none of the worker's
		// secrets, nor GITHUB_TOKEN, a copy of the git token.
		{name: "star", backend: "file:///state", allow: []string{"*"},
			want: []string{"ARM_CLIENT_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "PGSSLMODE",
				"SITE_FLAVOUR", "TEMPORAL_DB_PASSWORD"},
			withheld: []string{"GITHUB_TOKEN"}},
		{name: "postgres backend brings its credentials", backend: "postgres://changeops@db/pulumi",
			want: []string{"PGPASSWORD", "PGSSLMODE"}},
		{name: "s3 backend", backend: "s3://state?region=eu-west-1",
			want: []string{"AWS_REGION", "AWS_SECRET_ACCESS_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := Env{Root: "/tools", Home: "/home/changeops/.pulumi-home", BackendURL: tc.backend, Passphrase: "pass",
				Environ: worker, Allow: tc.allow, Deny: secretNames}
			got := e.StackVars(tc.stackEnv)
			for k, v := range e.Vars() {
				if got[k] != v {
					t.Errorf("%s = %q, want %q from Vars", k, got[k], v)
				}
				delete(got, k)
			}
			if got, want := slices.Sorted(maps.Keys(got)), tc.want; !slices.Equal(got, want) && len(got)+len(want) > 0 {
				t.Errorf("stack gets %v, want %v", got, want)
			}
			if w := e.Withheld(tc.stackEnv); !slices.Equal(w, tc.withheld) {
				t.Errorf("withheld %v, want %v", w, tc.withheld)
			}
		})
	}
}

// A pull request's preview gets none of what pulumi.env or the stack's env
// allow, only its preview_env (and the backend's credentials, which the
// engine needs to read the state), and never a worker secret.
func TestPreviewVarsGetOnlyPreviewEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, backend string
		previewEnv    []string
		want          []string
	}{
		{name: "nothing", backend: "file:///state"},
		{name: "read credentials", backend: "file:///state", previewEnv: []string{"SITE_*"}, want: []string{"SITE_FLAVOUR"}},
		{name: "backend credentials", backend: "s3://state", want: []string{"AWS_REGION", "AWS_SECRET_ACCESS_KEY"}},
		{name: "star", backend: "file:///state", previewEnv: []string{"*"},
			want: []string{"ARM_CLIENT_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "PGSSLMODE", "SITE_FLAVOUR", "TEMPORAL_DB_PASSWORD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := Env{Root: "/tools", Home: "/home/changeops/.pulumi-home", BackendURL: tc.backend, Passphrase: "pass",
				Environ: worker, Allow: []string{"AWS_*", "ARM_*", "SITE_*"}, Deny: secretNames}
			got := e.PreviewVars(tc.previewEnv)
			for k := range e.Vars() {
				delete(got, k)
			}
			if got, want := slices.Sorted(maps.Keys(got)), tc.want; !slices.Equal(got, want) && len(got)+len(want) > 0 {
				t.Errorf("preview gets %v, want %v", got, want)
			}
		})
	}
}

func TestCommandsGetNoWorkerSecret(t *testing.T) {
	t.Parallel()
	e := Env{Root: "/tools", Home: "/h", BackendURL: "postgres://u@db/p", Passphrase: "pass",
		Environ: worker, Allow: []string{"*"}, Deny: secretNames}
	cli := List(e.cliEnv(), List(e.StackVars(nil))...)
	check := e.CheckEnv([]string{"SITE_*"})
	for _, env := range [][]string{cli, check} {
		joined := "\n" + strings.Join(env, "\n") + "\n"
		for _, secret := range []string{"xoxb-worker", "signing", "git-token", "hook"} {
			if strings.Contains(joined, "="+secret+"\n") {
				t.Errorf("an environment holds the secret %q:%s", secret, joined)
			}
		}
		for _, name := range secretNames {
			if strings.Contains(joined, "\n"+name+"=") && name != "PULUMI_CONFIG_PASSPHRASE" {
				t.Errorf("an environment holds %s", name)
			}
		}
	}
	// The CLI gets the passphrase, its PATH first; a check gets neither
	// the passphrase nor the state backend's password, and the worker's
	// own PATH.
	if !slices.Contains(cli, "PULUMI_CONFIG_PASSPHRASE=pass") || !slices.Contains(cli, "PATH=/tools/bin:/usr/bin:/bin") {
		t.Errorf("CLI environment %v lacks the passphrase or the toolchain's PATH", cli)
	}
	base := Env{Environ: worker, Deny: secretNames}
	want := []string{"HOME=/home/changeops", "LANG=C.UTF-8", "LC_TIME=C", "PATH=/usr/bin:/bin", "SITE_FLAVOUR=blue", "TMPDIR=/tmp/w", "USER=changeops"}
	if got := base.CheckEnv([]string{"SITE_*"}); !slices.Equal(got, want) {
		t.Errorf("check environment = %v, want %v", got, want)
	}
}

// The Automation API's command appends the worker's environment to every
// CLI call; this one runs the CLI with exactly Base, Vars and what the
// workspace adds. A stand-in CLI prints what it got.
func TestCommandRunsWithTheBuiltEnvironment(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	cli := "#!/bin/sh\nif [ \"$1\" = version ]; then echo " + PulumiVersion + "; exit 0; fi\necho \"args: $*\"\nexec /usr/bin/env\n"
	if err := os.WriteFile(filepath.Join(root, "bin", "pulumi"), []byte(cli), 0o755); err != nil {
		t.Fatal(err)
	}
	e := Env{Root: root, Home: "/h", BackendURL: "file:///state", Passphrase: "pass", Environ: worker, Allow: []string{"AWS_*"}, Deny: secretNames, Offline: true}
	cmd, err := e.Command()
	if err != nil {
		t.Fatal(err)
	}
	if got := cmd.Version().String(); "v"+got != PulumiVersion {
		t.Errorf("version %s, want %s", got, PulumiVersion)
	}
	out, _, code, err := cmd.Run(context.Background(), t.TempDir(), nil, nil, nil, List(e.StackVars(nil)), "preview", "--diff")
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v", code, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "args: --non-interactive preview --diff" {
		t.Errorf("first line %q: want the CLI run non-interactive", lines[0])
	}
	var names []string
	for _, l := range lines[1:] {
		k, _, _ := strings.Cut(l, "=")
		names = append(names, k)
	}
	sort.Strings(names)
	want := []string{"AWS_REGION", "AWS_SECRET_ACCESS_KEY", "HOME", "LANG", "LC_TIME", "PATH", "PULUMI_AUTOMATION_API",
		"PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "PULUMI_HOME",
		"PULUMI_IGNORE_AMBIENT_PLUGINS", "PULUMI_SKIP_UPDATE_CHECK", "PWD", "TMPDIR", "USER"}
	if !slices.Equal(names, want) {
		t.Errorf("the CLI got %v\nwant %v", names, want)
	}
}
