package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/starter"
)

func driftCmd(g *globals) *cobra.Command {
	var req starter.DriftRequest
	var heal, noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drift --config F STACK",
		Short: "Check a stack for drift now (refresh and preview at its last good commit)",
		Long: "Starts a drift check of STACK now and, unless --no-wait, waits until it ends or asks for a decision. " +
			"The stack's drift policy applies (notify, approve, heal); --heal re-applies git if the stack drifted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.configPath == "" {
				return fmt.Errorf("drift needs --config: the path of changeops.yaml")
			}
			cfg, err := g.loadConfigLenient(g.configPath)
			if err != nil {
				return err
			}
			c, err := dialTemporal(cmd.Context(), cfg.Temporal, cfg.Secrets.TemporalAPIKey)
			if err != nil {
				return err
			}
			defer c.Close()
			req.Stack = args[0]
			if heal {
				req.Policy = config.DriftHeal
			}
			id, err := starter.Drift(cmd.Context(), c, cfg, req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s started\n", id)
			if noWait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for {
				run, err := starter.Status(ctx, c, id)
				if err == nil && starter.DriftSettled(run) {
					printStatus(out, run)
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("drift check %s has not ended or asked for a decision within %s (it goes on: changeops status %s)", id, timeout, id)
				case <-time.After(500 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&req.By, "as", defaultUser(), "who asks (recorded in the run)")
	cmd.Flags().BoolVar(&heal, "heal", false, "re-apply git if the stack drifted, whatever its drift policy")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the check started")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait for the finding")
	return cmd
}
