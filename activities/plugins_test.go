package activities

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
)

// A missing plugin, in the words of the engine of v3.259.0 (a YAML
// program's preview, escape codes already stripped): offline, and with
// the download failing. Each fails at once as the program's error and
// says which plugin and which setting would provide it.
func TestMissingPluginIsAProgramErrorNamingTheSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, engine string
		want         []string
	}{
		{"offline", `error: preview failed: Error: error resolving type of resource a: internal error loading package "changeops": rpc error: code = Unknown desc = no resource plugin 'pulumi-resource-changeops' found in the workspace at version v0.4.0 from http://127.0.0.1:1/direct/`,
			[]string{"resource plugin changeops v0.4.0 from http://127.0.0.1:1/direct/", "plugin acquisition is off (pulumi.offline)",
				"pulumi.plugins: {name: changeops, version: 0.4.0, server: <a server you trust>}", "pulumi.offline: false"}},
		{"download failed", "error: preview failed: Error: error resolving type of resource a: internal error loading package \"changeops\": rpc error: code = Unknown desc = Could not automatically download and install resource plugin 'pulumi-resource-changeops' at version v0.4.0, install the plugin using `pulumi plugin install resource changeops v0.4.0 --server http://127.0.0.1:1/direct/`: error downloading provider changeops to file: failed to download plugin: changeops-0.4.0: failed all 5 attempts",
			[]string{"resource plugin changeops v0.4.0 from http://127.0.0.1:1/direct/", "downloading it failed", "let the worker reach http://127.0.0.1:1/direct/",
				"pulumi.plugin_mirrors", "pulumi.plugins: {name: changeops, version: 0.4.0, server: <a server you trust>}"}},
		{"any language", "error: failed to load plugin: no language plugin 'pulumi-language-nodejs' found in the workspace",
			[]string{"language plugin nodejs, which is not installed", "{name: nodejs, kind: language}"}},
	} {
		err := pulumiError("preview", config.Stack{Name: "site", Stack: "dev"}, "3f2a91c0", errors.New(tc.engine))
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != ErrPulumiProgram || !ae.NonRetryable() {
			t.Errorf("%s: %v is not a program error", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(ae.Message(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, ae.Message(), w)
			}
		}
	}
	if h := pluginHint("error: the stack is currently locked by 1 lock(s)"); h != "" {
		t.Errorf("hint for another error: %q", h)
	}
}

// The Automation API's error puts the CLI's first line of stderr after
// "stderr: "; the summary keeps it (the engine's error) and the file line
// it points at.
func TestSummarizeKeepsTheEngineErrorAndItsLine(t *testing.T) {
	t.Parallel()
	auto := "failed to run update: exit status 1\ncode: 1\nstdout: Previewing update (dev):\n+ pulumi:pulumi:Stack: (create)\nResources:\n    + 1 to create\n\n" +
		"stderr: Error: error resolving type of resource page: unable to find resource type \"changeops:index:Nope\" in resource provider \"changeops\"\n\n" +
		"  on Pulumi.yaml line 5:\n\n   5:     type: changeops:index:Nope\n"
	want := `Error: error resolving type of resource page: unable to find resource type "changeops:index:Nope" in resource provider "changeops"; on Pulumi.yaml line 5:`
	if got := summarize(auto); got != want {
		t.Errorf("summarize = %q\nwant        %q", got, want)
	}
}
