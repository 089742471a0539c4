package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/worker"
)

func setupCmd(g *globals) *cobra.Command {
	var retention time.Duration
	cmd := &cobra.Command{
		Use:   "setup --config F",
		Short: "Prepare the Temporal namespace: create it if missing and register the search attributes",
		Long: "Run once per cluster, before the workers (the compose file's changeops-setup service does). " +
			"Creates temporal.namespace when it does not exist, with --retention as how long finished runs stay " +
			"in Temporal (and in `changeops audit`), registers changeops' search attributes, and waits until the " +
			"namespace takes workflows. Running it again changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, apiKey, err := g.temporalConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := worker.Dial(ctx, t, apiKey, g.logger, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := worker.Setup(ctx, c, t.Namespace, retention, g.logger); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "namespace %s on %s is ready for changeops\n", t.Namespace, t.Address)
			if t.Versioned() {
				fmt.Fprintln(cmd.OutOrStdout(), deploymentNote(cmd.Context(), c, t.DeploymentName))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&retention, "retention", 30*24*time.Hour, "how long a new namespace keeps finished runs")
	return cmd
}

// deploymentNote says where the workers' Worker Deployment stands, and
// what the first worker will do with it.
func deploymentNote(ctx context.Context, c client.Client, name string) string {
	if name == "" {
		name = config.DefaultDeploymentName
	}
	build, exists, err := worker.CurrentBuild(ctx, c, name)
	switch {
	case err != nil:
		return fmt.Sprintf("worker deployment %s: %v (set temporal.versioning: false if this server does not serve Worker Deployments)", name, err)
	case !exists || build == "":
		return fmt.Sprintf("worker deployment %s: no build is current yet; the first worker to start makes its build current", name)
	}
	return fmt.Sprintf("worker deployment %s: build %s is current; a new build becomes current with `changeops deployment set-current BUILD`", name, build)
}
