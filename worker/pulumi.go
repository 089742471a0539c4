package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/pulumienv"
)

// pulumiCLI is the Pulumi CLI the worker runs, as the start-up log and
// /readyz show it.
type pulumiCLI struct{ Path, Version string }

// startPulumi finds the Pulumi CLI (pulumi.cli, else PATH, else the
// toolchain's), refuses one below the minimum, installs the plugins the
// configuration lists and says what it runs with.
func startPulumi(ctx context.Context, cfg *config.Config, logger *slog.Logger) (pulumienv.Env, pulumiCLI, error) {
	p := cfg.Pulumi
	env := pulumienv.Env{
		Root:        p.Root,
		MinVersion:  p.MinVersion,
		Home:        p.Home,
		BackendURL:  p.BackendURL,
		Passphrase:  cfg.Secrets.PulumiPassphrase,
		AccessToken: cfg.Secrets.PulumiAccessToken,
		Offline:     p.Offline,
		// See pulumienv.Env.Vars for why plugins on PATH are off unless asked.
		AmbientPlugins: p.AmbientPlugins,
		// The programs, providers and checks get the base set, the Pulumi
		// settings and what these patterns match; never the variables
		// holding the worker's own secrets.
		Allow: p.Env,
		Deny:  cfg.SecretVarNames(),
	}
	for _, pl := range p.Plugins {
		env.Plugins = append(env.Plugins, pulumienv.Plugin{Kind: pl.Kind, Name: pl.Name, Version: pl.Version, Server: pl.Server})
	}
	for _, m := range p.PluginMirrors {
		env.Mirrors = append(env.Mirrors, pulumienv.Mirror{Match: m.Match, URL: m.URL})
	}
	var err error
	if env.CLI, err = env.FindCLI(p.CLI); err != nil {
		return env, pulumiCLI{}, err
	}
	cmd, err := env.Command()
	if err != nil {
		return env, pulumiCLI{}, err
	}
	cli := pulumiCLI{Path: env.CLI, Version: "v" + cmd.Version().String()}
	logger.Info("pulumi CLI", "path", cli.Path, "version", cli.Version, "backend", redactedURL(p.BackendURL),
		"offline", p.Offline, "plugins", len(p.Plugins), "plugin_mirrors", len(p.PluginMirrors))
	if err := env.EnsurePlugins(ctx); err != nil {
		return env, cli, err
	}
	for _, s := range cfg.Stacks {
		if w := env.Withheld(s.Env); len(w) > 0 {
			logger.Warn("variables allowed by pulumi.env or stacks[].env are withheld from the stack's programs and checks: each holds the same value as a variable that a *_env field names (a secret of the worker); give them values of their own",
				"stack", s.Name, "variables", strings.Join(w, ","))
		}
	}
	if dir, ok := strings.CutPrefix(p.BackendURL, "file://"); ok {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return env, cli, fmt.Errorf("create pulumi.backend_url folder %s: %w", dir, err)
		}
	}
	return env, cli, nil
}

// redactedURL is a URL as a log may show it: without a password.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	return u.Redacted()
}
