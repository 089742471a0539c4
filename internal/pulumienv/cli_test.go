package pulumienv

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blang/semver"
)

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, min string
		want     []string // fragments of the refusal; none: accepted
	}{
		{got: "3.259.0"},
		{got: "3.274.1", min: "v3.270.0"},
		{got: "3.39.0"},
		{got: "3.39.0-alpha.1", want: []string{"it is v3.39.0-alpha.1", "changeops needs v3.39.0 or newer"}},
		{got: "3.38.9", want: []string{"it is v3.38.9", "changeops needs v3.39.0 or newer", "set pulumi.cli"}},
		{got: "3.259.0", min: "v3.270.0", want: []string{"it is v3.259.0", "pulumi.min_version needs v3.270.0 or newer"}},
		{got: "3.259.0", min: "3.259.1", want: []string{"pulumi.min_version needs v3.259.1"}},
		// A lower min_version does not lower changeops' floor.
		{got: "3.30.0", min: "v3.0.0", want: []string{"changeops needs v3.39.0"}},
		{got: "3.259.0", min: "soon", want: []string{`pulumi.min_version "soon" is not a version`}},
	} {
		err := CheckVersion(semver.MustParse(tc.got), tc.min)
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("v%s with min %q refused: %v", tc.got, tc.min, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("v%s with min %q accepted", tc.got, tc.min)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("v%s with min %q: %q lacks %q", tc.got, tc.min, err, w)
			}
		}
	}
}

func TestFindCLI(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // where a relative PATH entry would point
	exe := func(path string) string {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	onPath := exe(filepath.Join(dir, "usr", "bin", "pulumi"))
	other := exe(filepath.Join(dir, "opt", "bin", "pulumi-3"))
	notExec := filepath.Join(dir, "first", "pulumi")
	exe(notExec)
	if err := os.Chmod(notExec, 0o644); err != nil {
		t.Fatal(err)
	}
	exe(filepath.Join(dir, "rel", "pulumi")) // never taken from a relative PATH entry
	path := "PATH=rel:" + filepath.Dir(notExec) + ":" + filepath.Dir(onPath) + ":" + filepath.Dir(other)
	for _, tc := range []struct {
		name, configured, path, root string
		want, err                    string
	}{
		{name: "on PATH", path: path, root: "/tools", want: onPath},
		{name: "a path", configured: "/opt/pulumi/bin/pulumi", path: path, want: "/opt/pulumi/bin/pulumi"},
		{name: "a name on PATH", configured: "pulumi-3", path: path, want: other},
		{name: "a name not on PATH", configured: "pulumi-4", path: path, err: `pulumi.cli "pulumi-4" is not on the worker's PATH`},
		{name: "the toolchain's", path: "PATH=/nowhere", root: "/tools", want: "/tools/bin/pulumi"},
		{name: "none", path: "PATH=/nowhere", err: "no pulumi CLI"},
	} {
		e := Env{Root: tc.root, Environ: []string{tc.path}}
		got, err := e.FindCLI(tc.configured)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// The CLI's environment follows the settings: plugin acquisition, plugins
// on PATH, the mirrors, the service's token, and the passphrase only when
// there is one.
func TestVarsFollowSettings(t *testing.T) {
	t.Parallel()
	base := Env{CLI: "/opt/pulumi/bin/pulumi", Home: "/h", BackendURL: "https://api.pulumi.com", Environ: []string{"PATH=/usr/bin"}}
	v := base.Vars()
	for k, want := range map[string]string{
		"PATH":                          "/opt/pulumi/bin:/usr/bin",
		"PULUMI_BACKEND_URL":            "https://api.pulumi.com",
		"PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
	} {
		if v[k] != want {
			t.Errorf("%s = %q, want %q", k, v[k], want)
		}
	}
	for _, k := range []string{"PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES"} {
		if _, ok := v[k]; ok {
			t.Errorf("%s is set with nothing asking for it", k)
		}
	}
	e := base
	e.Passphrase, e.AccessToken, e.Offline, e.AmbientPlugins = "pass-phrase", "pul-token", true, true
	e.Mirrors = []Mirror{{Match: "^github://api.github.com/pulumi/", URL: "https://m.example.com/p/"}, {Match: "^https://get.example.com/", URL: "http://127.0.0.1:9/"}}
	v = e.Vars()
	for k, want := range map[string]string{
		"PULUMI_CONFIG_PASSPHRASE":                    "pass-phrase",
		"PULUMI_ACCESS_TOKEN":                         "pul-token",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		"PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES":        "^github://api.github.com/pulumi/=https://m.example.com/p/,^https://get.example.com/=http://127.0.0.1:9/",
	} {
		if v[k] != want {
			t.Errorf("%s = %q, want %q", k, v[k], want)
		}
	}
	if _, ok := v["PULUMI_IGNORE_AMBIENT_PLUGINS"]; ok {
		t.Error("ambient plugins asked for, but PULUMI_IGNORE_AMBIENT_PLUGINS is set")
	}
	// The token is the CLI's, never a check's.
	if slices.ContainsFunc(e.CheckEnv(nil), func(kv string) bool { return strings.Contains(kv, "pul-token") }) {
		t.Error("a check gets the access token")
	}
}

func TestReadable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain text\n\twith a tab": "plain text\n\twith a tab",
		// Pulumi YAML's diagnostic, as a preview printed it.
		"\x1b[31mError\x1b[0m: error resolving type of resource a\n\n   5:     type: \x1b[1;4mchangeops:index:File\x1b[0m\n": "Error: error resolving type of resource a\n\n   5:     type: changeops:index:File\n",
		"\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\":                                                                "link", // OSC 8 hyperlink
		"\x1b]0;window title\x07text":                        "text",                // OSC title, BEL-terminated
		"\x1b[2K\x1b[1Gprogress\r50%\r\ndone\x07\x08":        "progress\n50%\ndone", // cursor, CR, BEL, BS
		"<{%fg 1%}>error<{%reset%}>: <{%bold%}>x<{%reset%}>": "error: x",            // Pulumi's own colour markup
		"naïve ✓ 日本":                                         "naïve ✓ 日本",
	} {
		if got := Readable(in); got != want {
			t.Errorf("Readable(%q) = %q, want %q", in, got, want)
		}
	}
}

// What the CLI prints comes back readable and without the secrets
// changeops handed it, returned and streamed, even when a write splits an
// escape sequence or a secret.
func TestCommandOutputIsReadableAndMasked(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	cli := filepath.Join(root, "pulumi")
	script := "#!/bin/sh\nif [ \"$1\" = version ]; then echo v3.259.0; exit 0; fi\n" +
		"printf '\\033[1;4mchangeops:index:File\\033[0m env %s\\n' \"$PULUMI_CONFIG_PASSPHRASE\"\n" +
		"printf 'token \\033[1m'; sleep 0.1; printf '%s' \"$PULUMI_ACCESS_TOKEN\" | head -c 7; sleep 0.1\n" +
		"printf '%s' \"$PULUMI_ACCESS_TOKEN\" | tail -c +8; printf '\\033[0m\\n'\n" +
		"echo \"error: service said $PULUMI_ACCESS_TOKEN\" >&2; exit 1\n"
	if err := os.WriteFile(cli, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e := Env{CLI: cli, Home: "/h", BackendURL: "https://api.pulumi.com", Passphrase: "e2e-passphrase",
		AccessToken: "pul-abcdef0123456789", Environ: []string{"PATH=/usr/bin:/bin"}}
	cmd, err := e.Command()
	if err != nil {
		t.Fatal(err)
	}
	var streamed bytes.Buffer
	out, errOut, code, _ := cmd.Run(context.Background(), root, nil, []io.Writer{&streamed}, nil, nil, "preview")
	if code != 1 {
		t.Fatalf("exit code %d", code)
	}
	want := "changeops:index:File env [redacted]\ntoken [redacted]\n"
	if out != want || streamed.String() != want {
		t.Errorf("stdout %q, streamed %q; want %q", out, streamed.String(), want)
	}
	if errOut != "error: service said [redacted]\n" {
		t.Errorf("stderr %q", errOut)
	}
}

// A secret comes back escaped as often as plain: a Go error's %q, a JSON
// body, a URL. Each spelling is masked.
func TestSecretsAreMaskedInEverySpelling(t *testing.T) {
	e := Env{Passphrase: `pa"ss wörd\1`}
	for _, text := range []string{
		`pa"ss wörd\1`,
		`error: "pa\"ss w\u00f6rd\\1"`,
		`{"passphrase":"pa\"ss wörd\\1"}`,
		`https://example.com/?p=pa%22ss+w%C3%B6rd%5C1`,
	} {
		if got := e.readable(text); strings.Contains(got, "ss w") {
			t.Errorf("readable(%q) = %q: the secret shows", text, got)
		}
	}
}
