package cmd

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/jsonout"
	"github.com/changeops/changeops/starter"
)

func startCmd(g *globals) *cobra.Command {
	var t starter.Target
	cmd := &cobra.Command{
		Use:   "start --config F --commit SHA",
		Short: "Start (or find) the change run for a commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.configPath == "" {
				return fmt.Errorf("start needs --config: the path of changeops.yaml")
			}
			if t.Commit == "" {
				return fmt.Errorf("start needs --commit SHA")
			}
			cfg, err := g.loadConfig(g.configPath, g.env.Getenv)
			if err != nil {
				return err
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			cache, ok := activities.OpenRepos(cfg)[t.Repo]
			if !ok {
				return fmt.Errorf("--repo %q is not in the configuration: name one of repos[].name", t.Repo)
			}
			s, err := starter.Start(cmd.Context(), c, cfg, cache, t)
			if err != nil {
				return err
			}
			verb := "started"
			if s.Existed {
				verb = "already exists"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", s.ID, verb)
			return nil
		},
	}
	cmd.Flags().StringVar(&t.Commit, "commit", "", "commit SHA (full or abbreviated)")
	cmd.Flags().StringVar(&t.Repo, "repo", "", "a repos entry's name (default: the repo block)")
	cmd.Flags().StringVar(&t.Branch, "branch", "", "the branch the commit deploys to (default: the repository's branch)")
	return cmd
}

func decideCmd(g *globals, approve bool) *cobra.Command {
	var as, comment, key, reason string
	var override bool
	use, short := "reject ID", "Reject a change waiting for approval"
	if approve {
		use, short = "approve ID", "Approve a change waiting for approval"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + ". ID is a workflow ID or a unique prefix of the commit SHA.\n\n" +
			"The decision is signed with your SSH key (--key, else ssh-agent, else ~/.ssh/id_ed25519) " +
			"and counts only if the key is in your people entry on the workers.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			signer, person, err := g.decider(key, as)
			if err != nil {
				return err
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			id, err := starter.Resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if override {
				// Break glass (docs/windows.md, "Break glass").
				res, err := starter.Override(cmd.Context(), c, id, reason, starter.SignSSH(signer, person))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: override of its change window by %s recorded (%d of %d: %s)\n",
					id, person, len(res.Votes), res.Needed, strings.Join(res.Votes, ", "))
				return nil
			}
			res, err := starter.Decide(cmd.Context(), c, id, starter.Decision{Approve: approve, Comment: comment, Person: person, Signer: signer})
			if err != nil {
				return err
			}
			as = person
			verb := "rejected"
			if approve {
				verb = "approved"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s by %s (state %s)\n", id, verb, as, res.State)
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "your people entry (default: the one of --config that lists your key)")
	cmd.Flags().StringVar(&key, "key", "", "SSH private key file to sign with (default: ssh-agent, else ~/.ssh/id_ed25519)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	if approve {
		cmd.Flags().BoolVar(&override, "override-window", false, "vote to apply a run waiting for its change window or a freeze now (two approvers must; needs --reason)")
		cmd.Flags().StringVar(&reason, "reason", "", "why the window is overridden (recorded and announced)")
		cmd.PreRunE = func(*cobra.Command, []string) error {
			if override && strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--override-window needs --reason TEXT: it is recorded and announced")
			}
			return nil
		}
	}
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show what a change run is doing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			id, err := starter.Resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			run, err := starter.Status(cmd.Context(), c, id)
			if err != nil {
				return err
			}
			if t, _, err := g.temporalConfig(); err == nil {
				if err := starter.Holding(cmd.Context(), c, taskQueueOf(t), &run); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: the freezes are not shown: %v\n", err)
				}
			}
			if asJSON {
				return jsonout.Encode(cmd.OutOrStdout(), run)
			}
			printStatus(cmd.OutOrStdout(), run)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object")
	return cmd
}

func listCmd(g *globals) *cobra.Command {
	var f starter.Filter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List change runs and drift checks, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			runs, err := starter.List(cmd.Context(), c, f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			// The freezes in force come first, as a script or a person
			// reads what holds the runs before the runs.
			var frozen []activities.Freeze
			if t, _, err := g.temporalConfig(); err == nil {
				fr, err := starter.Freezes(cmd.Context(), c, taskQueueOf(t))
				if err != nil {
					// The runs are still worth listing; say what is missing.
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: the freezes are not listed: %v\n", err)
				}
				frozen = starter.InForce(fr, time.Now())
			}
			if asJSON {
				for _, f := range frozen {
					if err := jsonout.Encode(out, starter.FrozenLine(f)); err != nil {
						return err
					}
				}
				for _, r := range runs {
					if err := jsonout.Encode(out, r); err != nil {
						return err
					}
				}
				return nil
			}
			for _, f := range frozen {
				fmt.Fprintf(out, "FROZEN: %s\n", f)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tSTACKS\tAPPROVER")
			for _, r := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.State, strings.Join(r.Stacks, ","), r.Approver)
			}
			return tw.Flush()
		},
	}
	filterFlags(cmd, g, &f, 50, 0)
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per run")
	return cmd
}

// filterFlags adds the visibility filters list and audit share; --since
// is a duration back from now (0: all runs). Runs are those of the
// task queue of --config, when given, unless --all-task-queues: a namespace may hold
// other deployments' runs, which this one's workers cannot answer for.
func filterFlags(cmd *cobra.Command, g *globals, f *starter.Filter, limit int, sinceDefault time.Duration) {
	since := new(time.Duration)
	all := new(bool)
	cmd.Flags().BoolVar(all, "all-task-queues", false, "runs of every task queue in the namespace, not only the configuration's")
	cmd.Flags().StringVar(&f.Stack, "stack", "", "only runs touching this stack")
	cmd.Flags().StringVar(&f.State, "state", "", "only runs in this state")
	cmd.Flags().StringVar(&f.Author, "author", "", "only runs of commits by this author email")
	cmd.Flags().DurationVar(since, "since", sinceDefault, "only runs started within this long, like 720h (0: all)")
	cmd.Flags().IntVar(&f.Limit, "limit", limit, "at most this many runs")
	cmd.Flags().StringVar(&f.Kind, "kind", "", "only change runs (change) or drift checks (drift); default both")
	cmd.PreRun = func(*cobra.Command, []string) {
		if *since > 0 {
			f.Since = time.Now().Add(-*since)
		}
		// Without --config no task queue is known: every run is listed.
		if t, _, err := g.temporalConfig(); err == nil && !*all && g.configPath != "" {
			f.TaskQueue = taskQueueOf(t)
		}
	}
}

func auditCmd(g *globals) *cobra.Command {
	var f starter.Filter
	var format string
	cmd := &cobra.Command{
		Use:   "audit [--since 720h] [--format jsonl|csv]",
		Short: "Export the audit records of change runs (commit, author, approver, plan digest, updates, checks, reverts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			write := map[string]func(io.Writer, []starter.Record) error{"jsonl": starter.WriteJSONL, "csv": starter.WriteCSV}[format]
			if write == nil {
				return fmt.Errorf("--format %q is not a format: use jsonl or csv", format)
			}
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			var recs []starter.Record
			if f.Kind != starter.KindFreeze {
				if recs, err = starter.Audit(cmd.Context(), c, f); err != nil {
					return err
				}
			}
			if f.Kind == "" || f.Kind == starter.KindFreeze {
				t, _, err := g.temporalConfig()
				if err != nil {
					return err
				}
				frozen, err := starter.FreezeRecords(cmd.Context(), c, taskQueueOf(t), f.Since)
				if err != nil {
					return err
				}
				recs = append(recs, frozen...)
			}
			return write(cmd.OutOrStdout(), recs)
		},
	}
	filterFlags(cmd, g, &f, 1000, 720*time.Hour)
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl (one JSON object per run) or csv")
	return cmd
}

func printStatus(w io.Writer, r starter.Run) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "run\t%s\n", r.ID)
	fmt.Fprintf(tw, "state\t%s\n", r.State)
	fmt.Fprintf(tw, "commit\t%s\n", r.Commit)
	if r.Subject != "" {
		fmt.Fprintf(tw, "subject\t%s\n", r.Subject)
	}
	if r.Author != "" {
		fmt.Fprintf(tw, "author\t%s\n", r.Author)
	}
	fmt.Fprintf(tw, "stacks\t%s\n", strings.Join(r.Stacks, ", "))
	if r.Build != "" {
		fmt.Fprintf(tw, "build\t%s of deployment %s (%s)\n", r.Build, r.Deployment, r.Versioning)
	}
	if r.Detail != "" {
		fmt.Fprintf(tw, "detail\t%s\n", r.Detail)
	}
	for _, a := range r.Retrying {
		fmt.Fprintf(tw, "retrying\t%s\n", a)
	}
	for _, fr := range r.Frozen {
		f := fr.Freeze()
		if st := r.Status; st == nil || st.Window == nil || !slices.ContainsFunc(st.Window.Check.Frozen, f.Same) {
			fmt.Fprintf(tw, "frozen\t%s (holds the apply)\n", f)
		}
	}
	if st := r.Status; st != nil {
		for _, u := range st.Undone {
			fmt.Fprintf(tw, "without	%.7s (reverted on the branch since; not deployed)\n", u)
		}
		for _, p := range st.Plans {
			fmt.Fprintf(tw, "plan\t%s: +%d ~%d ±%d -%d (digest %.12s)\n", p.Stack, p.Create, p.Update, p.Replace, p.Delete, p.Digest)
			if pr := p.Policy; pr != nil {
				fmt.Fprintf(tw, "policies\t%s: %d denied, %d warnings, %d required (policy set %.12s)\n", p.Stack, len(pr.Deny), len(pr.Warn), len(pr.Require), pr.Digest)
				for _, v := range pr.Deny {
					fmt.Fprintf(tw, "denied\t%s: %s\n", p.Stack, v)
				}
				for _, v := range pr.Warn {
					fmt.Fprintf(tw, "warning\t%s: %s\n", p.Stack, v)
				}
				for _, r := range pr.Require {
					fmt.Fprintf(tw, "requires\t%s: %s\n", p.Stack, r)
				}
			}
		}
		if st.Drift != nil {
			for _, d := range st.Drift.Resources {
				fmt.Fprintf(tw, "drifted\t%s %s (%s)\n", d.Op, d.URN, strings.Join(d.Properties, ", "))
			}
		}
		if st.Approval.Required && st.Decision == nil {
			fmt.Fprintf(tw, "approvers\t%s (until %s)\n", strings.Join(st.Approval.Approvers, ", "), st.Approval.Deadline.Format("2006-01-02 15:04:05Z07:00"))
			for _, q := range st.Approval.Requirements {
				fmt.Fprintf(tw, "needs\t%s\n", q)
			}
		}
		if st.Approval.Required && st.Decision == nil {
			for _, c := range st.BatchCommits { // one decision covers the batch
				fmt.Fprintf(tw, "covers\t%.7s %s (%s)\n", c.SHA, c.Subject, c.AuthorName)
			}
		}
		if p := st.BatchPending; p != nil {
			fmt.Fprintf(tw, "batch\twaits for the approval of its batch of %d: decide run %s (commit %s)\n", p.Changes, p.Leader, p.LeaderCommit)
		}
		for _, d := range st.Approvals {
			fmt.Fprintf(tw, "approval\t%s %s\n", d.User, d.Comment)
		}
		if d := st.Decision; d != nil {
			verb := "rejected"
			if d.Approve {
				verb = "approved"
			}
			fmt.Fprintf(tw, "decision\t%s by %s %s\n", verb, d.User, d.Comment)
		}
		if w := st.Window; w != nil && !w.Since.IsZero() {
			verb := "waited for its window from"
			if st.State == contract.StateWaitingForWindow {
				verb = "waiting for its window since"
			}
			fmt.Fprintf(tw, "window\t%s %s\n", verb, w.Since.Format("2006-01-02 15:04:05Z07:00"))
			for _, f := range w.Check.Frozen {
				fmt.Fprintf(tw, "frozen\t%s\n", f)
			}
			for _, c := range w.Check.Closed {
				fmt.Fprintf(tw, "closed\t%s\n", c)
			}
			if next := w.Check.Next; !next.IsZero() && st.State == contract.StateWaitingForWindow {
				label := "opens"
				if len(w.Check.Frozen) > 0 {
					label = "next check" // when the freezes run out
				}
				fmt.Fprintf(tw, "%s\t%s\n", label, next.Format("2006-01-02 15:04:05Z07:00"))
			}
			for _, v := range w.Overrides {
				fmt.Fprintf(tw, "override\tby %s at %s: %s\n", v.User, v.At.Format("2006-01-02 15:04:05Z07:00"), v.Comment)
			}
			if w.Overridden {
				fmt.Fprintf(tw, "overridden\tapplied outside its window (break glass)\n")
			}
		}
		if st.RevertCommit != "" {
			fmt.Fprintf(tw, "revert\t%s\n", st.RevertCommit)
		}
		for _, r := range st.Restored {
			fmt.Fprintf(tw, "restored\t%s to %.7s: %s\n", r.Stack, r.Commit, r.Detail)
		}
		for _, v := range st.Verifications {
			for _, c := range v.Results {
				mark := "ok"
				if !c.Passed {
					mark = "FAILED"
				}
				fmt.Fprintf(tw, "verify\t%s %s %s: %s\n", v.Stack, mark, c.Check, c.Detail)
			}
		}
	}
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
	}
}

func ackRewriteCmd(g *globals) *cobra.Command {
	var as, repo string
	cmd := &cobra.Command{
		Use:   "ack-rewrite BRANCH",
		Short: "Resume a branch whose history was rewritten (force push); nothing from the rewritten part is deployed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := starter.AckRewrite(cmd.Context(), c, repo, args[0], as)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s resumed by %s: deploying commits after %s\n", args[0], as, st.LastSeen)
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", defaultUser(), "who acknowledges")
	cmd.Flags().StringVar(&repo, "repo", "", "a repos entry's name (default: the repo block)")
	return cmd
}
