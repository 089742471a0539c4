// Package pulumienv is the Pulumi toolchain as changeops runs it: a Pulumi
// CLI (the user's, or the one scripts/toolchain builds) of at least
// MinPulumiVersion, a PULUMI_HOME of changeops' own with the plugins the
// configuration lists installed at start-up, plugin acquisition on or off
// (pulumi.offline), and the environment of every process it starts, built
// on purpose (environ.go), never the worker's own. What the CLI prints
// reaches changeops through Readable (text.go): no terminal escape codes,
// and no secret changeops handed the CLI.
package pulumienv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
)

// Versions changeops is built and tested against. scripts/toolchain reads
// these lines; keep them one per line.
const (
	PulumiVersion   = "v3.259.0"
	YAMLVersion     = "1.38.1"
	ProviderName    = "changeops"
	ProviderVersion = "0.1.0"
)

// MinPulumiVersion is the oldest Pulumi CLI changeops runs. The Automation
// API's own floor is v3.2.0 (sdk/go/auto/minimum_version.go), but a
// retried update that died in flight is recovered with `pulumi refresh
// --clear-pending-creates` (activities/recover.go), which the CLI has
// since v3.39.0 (pulumi/pulumi#10394). The end-to-end tests run the
// pinned PulumiVersion and the newest CLI the toolchain builds
// (toolchain/pulumi-newest); versions between the floor and those are
// accepted but not tested here. pulumi.min_version raises the floor for
// a deployment.
const MinPulumiVersion = "v3.39.0"

// Env is one Pulumi CLI and state backend.
type Env struct {
	// Root is the toolchain scripts/toolchain builds: bin/pulumi,
	// bin/pulumi-language-yaml and changeops' own provider,
	// bin/pulumi-resource-changeops, installed into Home at start-up
	// when it is there.
	Root string
	// CLI is the pulumi binary; empty is Root/bin/pulumi. FindCLI
	// resolves pulumi.cli to it.
	CLI string
	// MinVersion refuses a CLI older than it (pulumi.min_version); empty
	// is MinPulumiVersion, and a lower one counts as that.
	MinVersion string
	// Home is PULUMI_HOME.
	Home string
	// BackendURL is the state backend: a DIY backend (file://, s3://,
	// postgres://, ...) or a Pulumi service (https://).
	BackendURL string
	// Passphrase encrypts the secrets of stacks whose secrets provider is
	// passphrase; passed to the CLI in its environment only, and only when
	// set.
	Passphrase string
	// AccessToken logs the CLI in to a Pulumi service backend; passed to
	// it as PULUMI_ACCESS_TOKEN, in its environment only.
	AccessToken string
	// Offline turns automatic plugin acquisition off: a plugin that is not
	// installed fails the preview at once instead of being downloaded.
	Offline bool
	// AmbientPlugins lets the engine use plugin binaries found on PATH
	// (Pulumi's default); off, only installed plugins and the language
	// hosts beside the CLI are used.
	AmbientPlugins bool
	// Plugins are installed into Home at start-up (pulumi.plugins).
	Plugins []Plugin
	// Mirrors rewrite plugin download URLs (pulumi.plugin_mirrors):
	// PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES.
	Mirrors []Mirror
	// Environ is the worker's environment, the only source of the variables
	// child processes get besides Vars; nil means this process's.
	Environ []string
	// Allow are patterns (path.Match) of the variables of Environ every
	// stack's program, providers and checks get: pulumi.env.
	Allow []string
	// Deny names variables never passed, whatever the patterns: the
	// worker's own secrets (config.SecretVarNames).
	Deny []string
}

// Plugin is a plugin installed at start-up: `pulumi plugin install KIND
// NAME VERSION [--server SERVER]`.
type Plugin struct {
	Kind, Name, Version, Server string
}

func (p Plugin) String() string {
	return fmt.Sprintf("%s plugin %s v%s", p.Kind, p.Name, strings.TrimPrefix(p.Version, "v"))
}

// Mirror sends the downloads of plugins whose source URL matches Match (a
// regular expression; a plugin with no pluginDownloadURL has the source
// github://api.github.com/pulumi/pulumi-NAME) to URL.
type Mirror struct {
	Match, URL string
}

// Vars is the environment every Pulumi CLI call gets.
func (e Env) Vars() map[string]string {
	v := map[string]string{
		"PULUMI_HOME":              e.Home,
		"PULUMI_BACKEND_URL":       BackendURL(e.BackendURL),
		"PULUMI_SKIP_UPDATE_CHECK": "true",
		// The language hosts live beside the CLI (the engine looks there
		// for them); PATH starts there too, for programs that run pulumi.
		"PATH": filepath.Dir(e.bin()) + string(os.PathListSeparator) + e.environ()["PATH"],
	}
	// An empty PULUMI_CONFIG_PASSPHRASE is a passphrase too (the empty
	// one): without a passphrase the variable is left out, so that a
	// passphrase stack fails instead of being encrypted with "".
	if e.Passphrase != "" {
		v["PULUMI_CONFIG_PASSPHRASE"] = e.Passphrase
	}
	if e.AccessToken != "" {
		v["PULUMI_ACCESS_TOKEN"] = e.AccessToken
	}
	if e.Offline {
		v["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
	}
	// A plugin on PATH wins over the version a program asks for, whatever
	// its own version: plans would depend on the worker's PATH rather
	// than the repository. Language hosts beside the CLI are found either
	// way (the engine looks next to its own executable).
	if !e.AmbientPlugins {
		v["PULUMI_IGNORE_AMBIENT_PLUGINS"] = "true"
	}
	if len(e.Mirrors) > 0 {
		pairs := make([]string, len(e.Mirrors))
		for i, m := range e.Mirrors {
			pairs[i] = m.Match + "=" + m.URL
		}
		v["PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES"] = strings.Join(pairs, ",")
	}
	return v
}

// BackendURL is url as the CLI gets it. A file:// backend writes no
// metadata sidecars (gocloud's fileblob `metadata=skip`): fileblob writes a
// stack file by rename, atomically, but its `.attrs` sidecar in place, so a
// worker killed at that moment left an empty sidecar, and every later
// command on the stack failed with "failed to load checkpoint: EOF". The
// DIY backend reads no metadata it needs from them.
func BackendURL(url string) string {
	if !strings.HasPrefix(url, "file://") || strings.Contains(url, "metadata=") {
		return url
	}
	if strings.Contains(url, "?") {
		return url + "&metadata=skip"
	}
	return url + "?metadata=skip"
}

// Command returns the CLI for the Automation API, refusing one older than
// the minimum with an error that names both versions and the fix. It runs
// with Base and Vars, plus what the workspace adds (StackVars).
func (e Env) Command() (auto.PulumiCommand, error) {
	cmd, err := e.newCommand(context.Background())
	if err != nil {
		return nil, fmt.Errorf("pulumi CLI %s: %w (%s)", e.bin(), err, installHint)
	}
	if err := CheckVersion(cmd.Version(), e.MinVersion); err != nil {
		return nil, fmt.Errorf("pulumi CLI %s: %w", e.bin(), err)
	}
	return cmd, nil
}

// installHint says how to get a CLI changeops runs.
const installHint = "install the Pulumi CLI (https://www.pulumi.com/docs/iac/download-install/) and set pulumi.cli to it or put it on the worker's PATH; `changeops dev` and the tests use the one scripts/toolchain builds"

// CheckVersion refuses a CLI version below min (pulumi.min_version; empty,
// or lower than MinPulumiVersion, is MinPulumiVersion), naming both
// versions and the fix.
func CheckVersion(got semver.Version, min string) error {
	floor, field := semver.MustParse(strings.TrimPrefix(MinPulumiVersion, "v")), "changeops"
	if min != "" {
		v, err := semver.ParseTolerant(min)
		if err != nil {
			return fmt.Errorf("pulumi.min_version %q is not a version like v3.200.0", min)
		}
		if v.GT(floor) {
			floor, field = v, "pulumi.min_version"
		}
	}
	if got.LT(floor) {
		return fmt.Errorf("it is v%s, but %s needs v%s or newer: %s", got, field, floor, installHint)
	}
	return nil
}

// bin is the CLI.
func (e Env) bin() string {
	if e.CLI != "" {
		return e.CLI
	}
	return filepath.Join(e.Root, "bin", "pulumi")
}

// FindCLI resolves pulumi.cli: a path is taken as it is, a bare name is
// looked up on the worker's PATH; with none configured, pulumi on the
// worker's PATH, else the toolchain's (Root/bin/pulumi).
func (e Env) FindCLI(configured string) (string, error) {
	if strings.ContainsRune(configured, os.PathSeparator) {
		return configured, nil
	}
	name := configured
	if name == "" {
		name = "pulumi"
	}
	for _, dir := range filepath.SplitList(e.environ()["PATH"]) {
		// An empty or relative element would be the worker's working
		// directory: never a place to run a program from.
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if configured != "" {
		return "", fmt.Errorf("pulumi.cli %q is not on the worker's PATH: give its path, or %s", configured, installHint)
	}
	if e.Root != "" {
		return filepath.Join(e.Root, "bin", "pulumi"), nil
	}
	return "", errors.New("no pulumi CLI: none on the worker's PATH and pulumi.cli is not set; " + installHint)
}

// pluginDir is where `pulumi plugin install` puts a resource plugin.
func (e Env) pluginDir(name, version string) string {
	return filepath.Join(e.Home, "plugins", fmt.Sprintf("resource-%s-v%s", name, version))
}

// EnsurePlugins installs the plugins of pulumi.plugins into Home (the CLI
// skips one installed already), then changeops' own provider from
// Root/bin unless the same binary is installed already (a rebuilt provider
// of the same version replaces the old one). Without the provider's binary
// it is skipped, unless the worker is offline: the demo and the tests
// deploy with it, and nothing would download it.
func (e Env) EnsurePlugins(ctx context.Context) error {
	if err := os.MkdirAll(e.Home, 0o755); err != nil {
		return fmt.Errorf("create PULUMI_HOME %s: %w", e.Home, err)
	}
	for i, p := range e.Plugins {
		args := []string{"plugin", "install", p.Kind, p.Name, p.Version}
		if p.Server != "" {
			args = append(args, "--server", p.Server)
		}
		cmd := exec.CommandContext(ctx, e.bin(), args...)
		cmd.Env = List(e.cliEnv())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("install %s (pulumi.plugins[%d]) into %s: %w: %s", p, i, e.Home, err, e.readable(string(out)))
		}
	}
	if e.Root == "" {
		return nil
	}
	bin := filepath.Join(e.Root, "bin", "pulumi-resource-"+ProviderName)
	want, err := fileDigest(bin)
	if err != nil && !e.Offline {
		return nil
	}
	if err != nil {
		return fmt.Errorf("provider %s %s: %s is missing (run scripts/toolchain): %w", ProviderName, ProviderVersion, bin, err)
	}
	installed := filepath.Join(e.pluginDir(ProviderName, ProviderVersion), "pulumi-resource-"+ProviderName)
	if got, err := fileDigest(installed); err == nil && got == want {
		return nil
	}
	cmd := exec.CommandContext(ctx, e.bin(),
		"plugin", "install", "resource", ProviderName, ProviderVersion, "--file", bin, "--reinstall")
	cmd.Env = List(e.cliEnv())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("install provider %s %s into %s: %w: %s", ProviderName, ProviderVersion, e.Home, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
