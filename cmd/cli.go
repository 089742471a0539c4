// Package cli is the `changeops` command line: dev, worker, start, approve,
// reject, status, list, audit, ack-rewrite, drift, setup, deployment,
// freeze, unfreeze and policy.
package cmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/worker"
)

// Env is what main hands the CLI from the process environment; nothing
// below reads the environment itself.
type Env struct {
	Getenv func(string) string
	// Stdin is what `policy eval` reads; nil reads nothing.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Tools is the toolchain root (bin/pulumi, bin/temporal, ...).
	Tools string
}

type globals struct {
	env        Env
	configPath string
	address    string
	namespace  string
	logger     *slog.Logger
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	g := &globals{env: env, logger: slog.New(slog.NewTextHandler(env.Stderr, nil))}
	root := &cobra.Command{
		Use:           "changeops",
		Short:         "Every merged commit becomes a durable, approved, verified Pulumi change",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetArgs(args)
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "changeops.yaml to use")
	root.PersistentFlags().StringVar(&g.address, "address", "", "Temporal frontend host:port (default: from the config, else "+config.DefaultTemporalAddress+")")
	root.PersistentFlags().StringVar(&g.namespace, "namespace", "", "Temporal namespace (default: from the config, else "+config.DefaultNamespace+")")
	root.AddCommand(devCmd(g), workerCmd(g), startCmd(g), decideCmd(g, true), decideCmd(g, false), statusCmd(g), listCmd(g), auditCmd(g), ackRewriteCmd(g), driftCmd(g), setupCmd(g), deploymentCmd(g), freezeCmd(g, true), freezeCmd(g, false), policyCmd(g))
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(env.Stderr, "changeops:", err)
		return 1
	}
	return 0
}

// newLogger logs as the config's log block says.
func newLogger(l config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadConfig reads the config named by --config, filling the toolchain
// root when the file does not set one.
func (g *globals) loadConfig(path string, getenv func(string) string) (*config.Config, error) {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return nil, err
	}
	if cfg.Pulumi.Root == "" {
		cfg.Pulumi.Root = g.env.Tools
	}
	g.logger = newLogger(cfg.Log, g.env.Stderr)
	if g.address != "" {
		cfg.Temporal.Address = g.address
	}
	if g.namespace != "" {
		cfg.Temporal.Namespace = g.namespace
	}
	return cfg, nil
}

// temporalConfig is the Temporal part of --config if given, else defaults,
// with --address and --namespace on top: approving needs no config file,
// nor the worker's secrets. apiKey is the value of temporal.api_key_env.
func (g *globals) temporalConfig() (t config.Temporal, apiKey string, err error) {
	t = config.Temporal{Address: config.DefaultTemporalAddress, Namespace: config.DefaultNamespace}
	if g.configPath != "" {
		cfg, err := g.loadConfigLenient(g.configPath)
		if err != nil {
			return t, "", err
		}
		t, apiKey = cfg.Temporal, cfg.Secrets.TemporalAPIKey
	}
	if g.address != "" {
		t.Address = g.address
	}
	if g.namespace != "" {
		t.Namespace = g.namespace
	}
	return t, apiKey, nil
}

// loadConfigLenient is loadConfig for commands that read only the stacks
// and Temporal: the secrets are the worker's, so an unset secret variable
// must not stop a person from running them.
func (g *globals) loadConfigLenient(path string) (*config.Config, error) {
	cfg, err := g.loadConfig(path, func(k string) string {
		if v := g.env.Getenv(k); v != "" {
			return v
		}
		return "not-needed-here"
	})
	if err != nil {
		return nil, err
	}
	// The Temporal API key is the person's credential as much as the
	// worker's: it comes from this environment, never the placeholder
	// (an unset one is refused by dialTemporal, naming the variable).
	if name := cfg.Temporal.APIKeyEnv; name != "" {
		cfg.Secrets.TemporalAPIKey = g.env.Getenv(name)
	}
	return cfg, nil
}

func (g *globals) dial(ctx context.Context) (client.Client, error) {
	t, apiKey, err := g.temporalConfig()
	if err != nil {
		return nil, err
	}
	return dialTemporal(ctx, t, apiKey)
}

// dialTemporal connects to the Temporal t names (loadConfig has applied
// --address and --namespace to it), secured as worker.ClientOptions says.
func dialTemporal(ctx context.Context, t config.Temporal, apiKey string) (client.Client, error) {
	opts, err := worker.ClientOptions(t, apiKey)
	if err != nil {
		return nil, err
	}
	opts.Logger = quietLogger()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (set --address or temporal.address): %w", t.Address, err)
	}
	return c, nil
}

func defaultUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func workerCmd(g *globals) *cobra.Command {
	var pauseAt []string
	var pauseMarks string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the worker and HTTP endpoints against an existing Temporal",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.configPath == "" {
				return fmt.Errorf("worker needs --config: the path of changeops.yaml")
			}
			cfg, err := g.loadConfig(g.configPath, g.env.Getenv)
			if err != nil {
				return err
			}
			var opts []worker.Option
			if len(pauseAt) > 0 {
				opts = append(opts, worker.WithPause(pauseAt, pauseMarks))
			}
			return worker.Run(cmd.Context(), cfg, g.logger, opts...)
		},
	}
	// Fault injection for changeops' own tests; hidden from users.
	cmd.Flags().StringSliceVar(&pauseAt, "pause-at", nil, "stop activities at these points (tests only)")
	cmd.Flags().StringVar(&pauseMarks, "pause-marks", "", "file recording the points reached (tests only)")
	_ = cmd.Flags().MarkHidden("pause-at")
	_ = cmd.Flags().MarkHidden("pause-marks")
	return cmd
}
