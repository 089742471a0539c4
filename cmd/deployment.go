package cmd

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/jsonout"
	"github.com/changeops/changeops/worker"
)

// deploymentCmd wraps Temporal's Worker Deployment API for rolling out a
// build of changeops (docs/upgrading.md).
func deploymentCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "deployment",
		Short: "Roll out a build of changeops: describe the Worker Deployment, make a build current, ramp one",
		Long: "Every changeops worker polls as one build (version) of a Temporal Worker Deployment " +
			"(temporal.deployment_name, temporal.build_id). New runs go to the current build; a change or drift " +
			"run stays on the build that started it; the watchers and stack queues follow the current build.",
	}
	cmd.PersistentFlags().StringVar(&name, "deployment", "", "Worker Deployment name (default: temporal.deployment_name of --config, else "+config.DefaultDeploymentName+")")
	deployment := func() (string, error) {
		if name != "" {
			return name, nil
		}
		t, _, err := g.temporalConfig()
		if err != nil {
			return "", err
		}
		if t.DeploymentName == "" {
			return config.DefaultDeploymentName, nil
		}
		return t.DeploymentName, nil
	}

	var asJSON bool
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Show the current and ramping builds, and the runs still pinned to each build",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dep, err := deployment()
			if err != nil {
				return err
			}
			t, _, err := g.temporalConfig()
			if err != nil {
				return err
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := worker.DescribeDeployment(cmd.Context(), c, t.Namespace, dep)
			if err != nil {
				return err
			}
			if asJSON {
				return jsonout.Encode(cmd.OutOrStdout(), st)
			}
			printDeployment(cmd.OutOrStdout(), st)
			return nil
		},
	}
	describe.Flags().BoolVar(&asJSON, "json", false, "one JSON object")

	var unversioned bool
	setCurrent := &cobra.Command{
		Use:   "set-current BUILD",
		Short: "Make BUILD the current build: new runs go to it, pinned runs stay on their builds",
		Long: "Makes BUILD (a build ID, as /readyz and `changeops deployment describe` show it) the current build. " +
			"New change and drift runs start on it, the watchers and stack queues move to it at their next task, " +
			"and runs pinned to other builds finish there: keep those builds' workers until `describe` shows no run " +
			"pinned to them. Temporal refuses a build whose workers have not polled yet. " +
			"--unversioned instead routes to unversioned workers (temporal.versioning: false).",
		Args: func(cmd *cobra.Command, args []string) error {
			if unversioned {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dep, err := deployment()
			if err != nil {
				return err
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			build := ""
			if !unversioned {
				build = args[0]
			}
			was, err := worker.SetCurrent(cmd.Context(), c, dep, build)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is current in worker deployment %s (was %s); runs pinned to %s stay there until they end\n",
				buildName(build), dep, buildName(was), buildName(was))
			return nil
		},
	}
	setCurrent.Flags().BoolVar(&unversioned, "unversioned", false, "route to unversioned workers instead of a build")

	ramp := &cobra.Command{
		Use:   "ramp BUILD PERCENT",
		Short: "Send PERCENT of new runs to BUILD instead of the current build (0 stops the ramp)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pct, err := strconv.ParseFloat(strings.TrimSuffix(args[1], "%"), 32)
			if err != nil {
				return fmt.Errorf("percent %q: give a number from 0 to 100", args[1])
			}
			dep, err := deployment()
			if err != nil {
				return err
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if err := worker.Ramp(cmd.Context(), c, dep, args[0], float32(pct)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "build %s takes %v%% of new runs in worker deployment %s\n", args[0], pct, dep)
			return nil
		},
	}
	cmd.AddCommand(describe, setCurrent, ramp)
	return cmd
}

func buildName(b string) string {
	if b == "" {
		return "unversioned workers"
	}
	return "build " + b
}

func printDeployment(w io.Writer, st worker.DeploymentState) {
	fmt.Fprintf(w, "deployment %s: current %s", st.Name, buildName(st.Current))
	if st.Ramping != "" {
		fmt.Fprintf(w, ", ramping build %s at %v%%", st.Ramping, st.RampPercent)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "BUILD\tROLE\tCREATED\tPINNED RUNS")
	for _, b := range st.Builds {
		role := b.Drainage
		switch b.BuildID {
		case st.Current:
			role = "current"
		case st.Ramping:
			role = "ramping"
		}
		if role == "" {
			role = "-"
		}
		runs := strconv.FormatInt(b.Pinned, 10)
		if len(b.PinnedRuns) > 0 {
			runs += ": " + strings.Join(b.PinnedRuns, ", ")
			if int64(len(b.PinnedRuns)) < b.Pinned {
				runs += ", …"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.BuildID, role, b.Created.Format("2006-01-02 15:04:05Z07:00"), runs)
	}
}
