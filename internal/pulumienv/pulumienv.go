// Package pulumienv is the Pulumi toolchain as changeops runs it: the pinned
// CLI and language host under Root/bin, a PULUMI_HOME of changeops' own with
// its provider plugins installed from local files, and the environment that
// keeps the engine offline (no update check, no plugin downloads, no plugins
// picked up from PATH). Every process it starts gets an environment built
// on purpose (environ.go), never the worker's own.
package pulumienv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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

// Env is one Pulumi toolchain and state backend.
type Env struct {
	// Root holds bin/pulumi, bin/pulumi-language-yaml and the provider binaries.
	Root string
	// Home is PULUMI_HOME.
	Home string
	// BackendURL is the DIY backend (file://...).
	BackendURL string
	// Passphrase encrypts stack secrets; passed to the CLI in its environment only.
	Passphrase string
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

// Vars is the environment every Pulumi CLI call gets.
func (e Env) Vars() map[string]string {
	return map[string]string{
		"PULUMI_HOME":                                 e.Home,
		"PULUMI_BACKEND_URL":                          BackendURL(e.BackendURL),
		"PULUMI_CONFIG_PASSPHRASE":                    e.Passphrase,
		"PULUMI_SKIP_UPDATE_CHECK":                    "true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		"PULUMI_IGNORE_AMBIENT_PLUGINS":               "true",
		// The YAML language host lives beside the CLI; PATH lets the engine
		// find it wherever it looks.
		"PATH": filepath.Join(e.Root, "bin") + string(os.PathListSeparator) + e.environ()["PATH"],
	}
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

// Command returns the pinned CLI for the Automation API, refusing one of
// another version with an error that says how to install the right one. It
// runs with Base and Vars, plus what the workspace adds (StackVars).
func (e Env) Command() (auto.PulumiCommand, error) {
	cmd, err := e.newCommand(context.Background())
	if err != nil {
		return nil, fmt.Errorf("pulumi CLI under %s/bin: %w (run scripts/toolchain to build it)", e.Root, err)
	}
	if got := "v" + strings.TrimPrefix(cmd.Version().String(), "v"); got != PulumiVersion {
		return nil, fmt.Errorf("pulumi CLI under %s/bin is %s, changeops needs %s (run scripts/toolchain)", e.Root, got, PulumiVersion)
	}
	return cmd, nil
}

// bin is the pinned CLI.
func (e Env) bin() string { return filepath.Join(e.Root, "bin", "pulumi") }

// pluginDir is where `pulumi plugin install` puts a resource plugin.
func (e Env) pluginDir(name, version string) string {
	return filepath.Join(e.Home, "plugins", fmt.Sprintf("resource-%s-v%s", name, version))
}

// EnsurePlugins installs changeops' provider into Home from Root/bin unless
// the same binary is installed already (a rebuilt provider of the same
// version replaces the old one). Plugin acquisition is off, so a missing
// plugin would otherwise fail every preview.
func (e Env) EnsurePlugins(ctx context.Context) error {
	bin := filepath.Join(e.Root, "bin", "pulumi-resource-"+ProviderName)
	want, err := fileDigest(bin)
	if err != nil {
		return fmt.Errorf("provider %s %s: %s is missing (run scripts/toolchain): %w", ProviderName, ProviderVersion, bin, err)
	}
	installed := filepath.Join(e.pluginDir(ProviderName, ProviderVersion), "pulumi-resource-"+ProviderName)
	if got, err := fileDigest(installed); err == nil && got == want {
		return nil
	}
	if err := os.MkdirAll(e.Home, 0o755); err != nil {
		return fmt.Errorf("create PULUMI_HOME %s: %w", e.Home, err)
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
