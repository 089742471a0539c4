package cmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/changeops/changeops/internal/demo"
	"github.com/changeops/changeops/internal/devserver"
	"github.com/changeops/changeops/worker"
)

// demoPassphrase encrypts the demo's stack secrets when the user has not
// set PULUMI_CONFIG_PASSPHRASE; the demo holds no real secrets.
const demoPassphrase = "changeops-demo"

type devFlags struct {
	state    string
	port     int
	uiPort   int
	siteAddr string
	listen   string
}

func devCmd(g *globals) *cobra.Command {
	f := devFlags{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything on this machine: Temporal dev server with UI, worker, watcher, endpoints (and a demo without --config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), g, f)
		},
	}
	cmd.Flags().StringVar(&f.state, "state-dir", ".changeops", "where the dev server's database, the demo and the data live")
	cmd.Flags().IntVar(&f.port, "temporal-port", 7233, "Temporal frontend port")
	cmd.Flags().IntVar(&f.uiPort, "ui-port", 8233, "Temporal Web UI port")
	cmd.Flags().StringVar(&f.siteAddr, "demo-site", "127.0.0.1:8089", "where the demo site is served")
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:8088", "worker HTTP endpoints (demo only; a config sets http.listen)")
	return cmd
}

func runDev(ctx context.Context, g *globals, f devFlags) error {
	state := abs(f.state)
	srv, err := devserver.Start(ctx, devserver.Options{
		Bin:     filepath.Join(g.env.Tools, "bin", "temporal"),
		DBFile:  filepath.Join(state, "temporal.db"),
		IP:      "127.0.0.1",
		Port:    f.port,
		UIPort:  f.uiPort,
		LogFile: filepath.Join(state, "temporal.log"),
	})
	if err != nil {
		return err
	}
	defer srv.Stop()

	cfgPath := g.configPath
	getenv := g.env.Getenv
	var d *demo.Demo
	if cfgPath == "" {
		d, err = demo.Ensure(filepath.Join(state, "demo"), demo.Options{
			SiteAddr: f.siteAddr, HTTPListen: f.listen, DataDir: filepath.Join(state, "data"),
			TemporalAddress: srv.Address(), UIURL: srv.UIURL(),
		})
		if err != nil {
			return err
		}
		cfgPath = d.Config
		getenv = func(k string) string {
			if v := g.env.Getenv(k); v != "" || k != "PULUMI_CONFIG_PASSPHRASE" {
				return v
			}
			return demoPassphrase
		}
	}
	cfg, err := g.loadConfig(cfgPath, getenv)
	if err != nil {
		return err
	}
	// dev runs the toolchain's Pulumi CLI unless the config names one.
	if cfg.Pulumi.CLI == "" {
		cfg.Pulumi.CLI = filepath.Join(cfg.Pulumi.Root, "bin", "pulumi")
	}
	// dev always runs against the server it started, which speaks
	// plaintext on loopback.
	cfg.Temporal.Address, cfg.Temporal.UIURL = srv.Address(), srv.UIURL()
	cfg.Temporal.TLS, cfg.Temporal.APIKeyEnv, cfg.Secrets.TemporalAPIKey = nil, "", ""
	// Every binary dev runs is build "dev" of the deployment: a rebuilt
	// changeops must pick up the runs in flight on this one server
	// (replayed through their GetVersion branches), where pinning them to
	// the binary that started them would leave them to a worker that is
	// gone.
	if cfg.Temporal.BuildID == "" {
		cfg.Temporal.BuildID = "dev"
	}

	var site *http.Server
	if d != nil {
		if site, err = serveSite(d); err != nil {
			return err
		}
		defer site.Close()
	}
	w, err := worker.Start(ctx, cfg, g.logger)
	if err != nil {
		return err
	}
	defer w.Stop()

	out := g.env.Stdout
	fmt.Fprintf(out, "\nchangeops dev is running. Ctrl-C stops everything.\n")
	fmt.Fprintf(out, "  Temporal UI  %s\n", srv.UIURL())
	fmt.Fprintf(out, "  endpoints    http://%s/healthz\n", w.Addr())
	if d != nil {
		self, _ := os.Executable()
		fmt.Fprintf(out, "  demo site    http://%s/ (served once the first change is applied)\n\n", d.SiteAddr)
		fmt.Fprintf(out, "Try a change (commits in the demo clone are alice's; with four eyes bob approves):\n")
		fmt.Fprintf(out, "  cd %s\n", d.Clone)
		fmt.Fprintf(out, "  $EDITOR stacks/site/index.html && git commit -am 'Change the greeting' && git push\n")
		fmt.Fprintf(out, "  %s list\n", self)
		fmt.Fprintf(out, "  %s approve $(git rev-parse --short HEAD) --as bob --key %s\n\n", self, filepath.Join(d.Keys, "bob"))
	}
	<-ctx.Done()
	fmt.Fprintln(out, "stopping…")
	return nil
}

// serveSite serves the folder the demo stack writes.
func serveSite(d *demo.Demo) (*http.Server, error) {
	ln, err := net.Listen("tcp", d.SiteAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for the demo site on %s (use --demo-site): %w", d.SiteAddr, err)
	}
	s := &http.Server{Handler: http.FileServer(http.Dir(d.WWW)), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo site:", err)
		}
	}()
	return s, nil
}
