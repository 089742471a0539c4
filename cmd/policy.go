package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/jsonout"
	"github.com/changeops/changeops/internal/policy"
)

// errDenied makes `policy test` and `policy eval` exit 1 when a policy
// denies, after printing why, so that a script or CI can stop on it.
var errDenied = errors.New("a policy denies the plan")

// policyCmd develops policies against real plans: `test` judges a
// recorded run's plans, `eval` a plan document read from stdin, both with
// the worker's organisation policies and the repository's (--policies, by
// default policy.path under the current folder).
func policyCmd(g *globals) *cobra.Command {
	var dir string
	var asJSON bool
	root := &cobra.Command{
		Use:   "policy",
		Short: "Evaluate the policies against a run's plans or a plan document (docs/policy.md)",
	}
	root.PersistentFlags().StringVar(&dir, "policies", "", "the repository's policy folder (default: policy.path of the config, under the current folder)")
	root.PersistentFlags().BoolVar(&asJSON, "json", false, "print the results as JSON")

	judge := func(cmd *cobra.Command, docs map[string]policy.Input) error {
		if g.configPath == "" {
			return fmt.Errorf("policy needs --config: the path of changeops.yaml, for the organisation's policies and the policy folder")
		}
		cfg, err := g.loadConfigLenient(g.configPath)
		if err != nil {
			return err
		}
		set, err := loadPolicies(cmd, cfg.Policy, dir)
		if err != nil {
			return err
		}
		results := map[string]policy.Result{}
		denied := false
		for _, name := range slices.Sorted(maps.Keys(docs)) {
			res, err := set.Evaluate(cmd.Context(), docs[name])
			if err != nil {
				return err
			}
			results[name] = res
			denied = denied || len(res.Deny) > 0
		}
		out := cmd.OutOrStdout()
		if asJSON {
			if err := jsonout.Encode(out, results); err != nil {
				return err
			}
		} else {
			printResults(out, set, results)
		}
		if denied {
			return errDenied
		}
		return nil
	}

	test := &cobra.Command{
		Use:   "test --plan RUN_ID",
		Short: "Evaluate the policies against the plans a run recorded (on the worker's data folder)",
		Long: "Evaluate the policies against the plans a run recorded: the input documents the worker kept in " +
			"data_dir/policy-inputs when it planned the run. RUN_ID is the run's ID or a unique part of it (the commit's SHA prefix). " +
			"Exits 1 when a policy denies.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plan, _ := cmd.Flags().GetString("plan")
			if plan == "" {
				return fmt.Errorf("--plan RUN_ID is required: the run whose plans to judge")
			}
			if g.configPath == "" {
				return fmt.Errorf("policy test needs --config: the worker's changeops.yaml, whose data_dir holds the recorded plans")
			}
			cfg, err := g.loadConfigLenient(g.configPath)
			if err != nil {
				return err
			}
			docs, err := recordedInputs(cfg.DataDir, plan)
			if err != nil {
				return err
			}
			return judge(cmd, docs)
		},
	}
	test.Flags().String("plan", "", "the run whose recorded plans to judge")

	eval := &cobra.Command{
		Use:   "eval < plan.json",
		Short: "Evaluate the policies against an input document read from stdin",
		Long: "Evaluate the policies against an input document (docs/policy.md#the-input-document) read from stdin, " +
			"such as one `changeops policy test` judged. Exits 1 when a policy denies.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var doc policy.Input
			dec := json.NewDecoder(io.LimitReader(cmd.InOrStdin(), 256<<20))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				return fmt.Errorf("read the input document from stdin: %w (see docs/policy.md#the-input-document)", err)
			}
			return judge(cmd, map[string]policy.Input{orElse(doc.Stack.Name, "stdin"): doc})
		},
	}
	root.AddCommand(test, eval)
	return root
}

// loadPolicies compiles the organisation's policies of the config and the
// repository's: dir, or policy.path under the current folder.
func loadPolicies(cmd *cobra.Command, p config.Policy, dir string) (*policy.Set, error) {
	root := "."
	if dir != "" {
		// The folder given is the policy folder itself: read it as the
		// repository's policy.path, from its parent.
		root, p.Path = filepath.Dir(dir), filepath.Base(filepath.Clean(dir))
	}
	set, err := activities.LoadPolicies(cmd.Context(), p, root)
	if err != nil {
		return nil, err
	}
	if set.Empty() {
		return nil, fmt.Errorf("no policy found: neither policy.org of the config nor %s holds a .rego file", filepath.Join(root, p.RepoPolicies()))
	}
	return set, nil
}

// recordedInputs reads the input documents the worker kept for a run,
// by stack; run is its ID or a unique part of it.
func recordedInputs(dataDir, run string) (map[string]policy.Input, error) {
	base := filepath.Join(dataDir, "policy-inputs")
	entries, err := os.ReadDir(base)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var matches []string
	for _, e := range entries {
		id, err := url.PathUnescape(e.Name())
		if err == nil && e.IsDir() && (id == run || strings.Contains(id, run)) {
			if id == run {
				matches = []string{e.Name()}
				break
			}
			matches = append(matches, e.Name())
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("no recorded plan of run %q in %s: runs record their plans' input when policies judge them, on the worker whose data_dir this is", run, base)
	case 1:
	default:
		return nil, fmt.Errorf("%q names %d runs: give more of the ID", run, len(matches))
	}
	files, err := filepath.Glob(filepath.Join(base, matches[0], "*.json"))
	if err != nil {
		return nil, err
	}
	docs := map[string]policy.Input{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc policy.Input
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		stack, _ := url.PathUnescape(strings.TrimSuffix(filepath.Base(f), ".json"))
		docs[stack] = doc
	}
	return docs, nil
}

func printResults(w io.Writer, set *policy.Set, results map[string]policy.Result) {
	fmt.Fprintf(w, "policies %.12s: %s\n", set.Digest, strings.Join(set.Files, ", "))
	for _, stack := range slices.Sorted(maps.Keys(results)) {
		res := results[stack]
		fmt.Fprintf(w, "%s: %d denied, %d warnings, %d required\n", stack, len(res.Deny), len(res.Warn), len(res.Require))
		for _, v := range res.Deny {
			fmt.Fprintf(w, "  deny     %s\n", v)
		}
		for _, v := range res.Warn {
			fmt.Fprintf(w, "  warn     %s\n", v)
		}
		for _, q := range res.Require {
			fmt.Fprintf(w, "  require  %s\n", q)
		}
		if res.Omitted > 0 {
			fmt.Fprintf(w, "  … and %d more\n", res.Omitted)
		}
	}
}

func orElse(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
