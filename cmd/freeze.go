package cmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/starter"
)

// freezeCmd and unfreezeCmd are the emergency stop: signed with the
// person's SSH key like approve, recorded with who and why.
func freezeCmd(g *globals, freeze bool) *cobra.Command {
	var req starter.FreezeRequest
	var all bool
	var until, as, key string
	use, short := "unfreeze (--stack S | --all) --reason TEXT", "Lift a freeze: the runs waiting on it apply (inside their windows)"
	if freeze {
		use, short = "freeze (--stack S | --all) --reason TEXT [--until TIME]", "Stop a stack's applies (or every stack's) until unfrozen: runs plan and ask, then wait"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + ".\n\nSigned with your SSH key (--key, else ssh-agent, else ~/.ssh/id_ed25519); counts only if the key is in your " +
			"people entry on the workers. An apply already running finishes. --until takes a duration (2h) or a time (2025-12-24T18:00, local).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (req.Stack == "") == !all {
				return fmt.Errorf("name one stack with --stack, or every stack with --all")
			}
			if strings.TrimSpace(req.Reason) == "" {
				return fmt.Errorf("--reason TEXT is required: who froze or unfroze what, and why, is recorded and shown")
			}
			if until != "" {
				if !freeze {
					return fmt.Errorf("--until goes with freeze")
				}
				t, err := starter.ParseUntil(until, time.Now(), time.Local)
				if err != nil {
					return fmt.Errorf("--%w", err)
				}
				req.Until = t
			}
			signer, person, err := g.decider(key, as)
			if err != nil {
				return err
			}
			req.Sign = starter.SignSSH(signer, person)
			t, _, err := g.temporalConfig()
			if err != nil {
				return err
			}
			req.TaskQueue = taskQueueOf(t)
			if req.Stack != "" && g.configPath != "" {
				cfg, err := g.loadConfigLenient(g.configPath)
				if err != nil {
					return err
				}
				if _, ok := cfg.StackByName(req.Stack); !ok {
					return fmt.Errorf("stack %q is not in %s: name one of %s", req.Stack, g.configPath, strings.Join(cfg.StackNames(), ", "))
				}
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			if !freeze {
				ans, err := starter.Unfreeze(cmd.Context(), c, req)
				if err != nil {
					return err
				}
				for _, f := range ans.Lifted {
					fmt.Fprintf(out, "unfrozen %s (was: %s)\n", f.What(), f)
				}
				for _, f := range ans.Still {
					fmt.Fprintf(out, "still frozen: %s\n", f)
				}
				return nil
			}
			ans, err := starter.Freeze(cmd.Context(), c, req)
			if err != nil {
				return err
			}
			what := activities.Freeze{Stack: req.Stack}.What()
			fmt.Fprintf(out, "frozen %s by %s: %s\n", what, person, req.Reason)
			fmt.Fprintln(out, "runs plan and ask as usual, and wait in waiting-for-window before applying")
			for _, id := range ans.Applying {
				fmt.Fprintf(out, "%s is applying now: a freeze stops no apply already running, it finishes\n", id)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Stack, "stack", "", "the stack")
	cmd.Flags().BoolVar(&all, "all", false, "every stack (unfreeze: lift every freeze)")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why (recorded and shown; required)")
	if freeze {
		cmd.Flags().StringVar(&until, "until", "", "end the freeze by itself: a duration (2h) or a time (2025-12-24T18:00)")
	}
	cmd.Flags().StringVar(&as, "as", "", "your people entry (default: the one of --config that lists your key)")
	cmd.Flags().StringVar(&key, "key", "", "SSH private key file to sign with (default: ssh-agent, else ~/.ssh/id_ed25519)")
	return cmd
}

func taskQueueOf(t config.Temporal) string {
	if t.TaskQueue == "" {
		return config.DefaultTaskQueue
	}
	return t.TaskQueue
}
