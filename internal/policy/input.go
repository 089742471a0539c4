// Package policy judges a plan with Rego policies (Open Policy Agent,
// embedded): the input document a policy reads (input.go), loading and
// compiling the organisation's and the repository's policies into a set
// with a digest (load.go), and evaluating them into bounded results that
// a run can record (evaluate.go). docs/policy.md is the reference.
package policy

import (
	"bufio"
	"strings"
)

// Input is the document every policy reads as `input`. Its shape is a
// contract (docs/policy.md#the-input-document): fields are only added.
type Input struct {
	Commit Commit `json:"commit"`
	Stack  Stack  `json:"stack"`
	// Steps are what the engine would do, one per resource it would
	// create, update, replace or delete, in the engine's order.
	Steps []Step `json:"steps"`
}

// Commit is the commit being deployed.
type Commit struct {
	SHA       string   `json:"sha"`
	Subject   string   `json:"subject"`
	Author    Identity `json:"author"`
	Committer Identity `json:"committer"`
	// ChangedPaths are the paths the commit changed against its first
	// parent (the first MaxChangedPaths of them).
	ChangedPaths []string `json:"changed_paths"`
	// Trailers are the message's trailers ("Ticket: OPS-12"), by key as
	// written, each with its values in order.
	Trailers map[string][]string `json:"trailers"`
}

// Identity is an author or committer as git records them.
type Identity struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Stack is the stack planned, as the configuration describes it.
type Stack struct {
	// Name is stacks[].name; Stack the Pulumi stack it deploys.
	Name   string `json:"name"`
	Stack  string `json:"stack"`
	Branch string `json:"branch"`
	// Labels are stacks[].labels (environment: prod, team: payments).
	Labels   map[string]string `json:"labels"`
	Approval string            `json:"approval"`
	// Drift is true when the plan re-applies git over drift (a drift
	// run's heal), false for a change.
	Drift bool `json:"drift"`
}

// Step is one resource the engine would change, as its preview events
// report it; secret values are "[secret]", as the engine masks them.
type Step struct {
	// Op is create, update, replace, create-replacement, delete-replaced,
	// delete, … (Pulumi's operation names).
	Op       string `json:"op"`
	URN      string `json:"urn"`
	Type     string `json:"type"`
	Provider string `json:"provider"`
	// Old and New are the resource's inputs before and after; Old is
	// null for a create, New for a delete.
	Old map[string]any `json:"old"`
	New map[string]any `json:"new"`
	// ChangedKeys are the inputs that differ; ReplaceKeys those that
	// force a replacement.
	ChangedKeys []string `json:"changed_keys"`
	ReplaceKeys []string `json:"replace_keys"`
}

// Trailers reads the trailers of a commit message: the "Key: value" lines
// of its last paragraph, when every line of it is one (git's rule, without
// continuation lines). A message of one paragraph has none.
func Trailers(message string) map[string][]string {
	paras := strings.Split(strings.TrimSpace(strings.ReplaceAll(message, "\r\n", "\n")), "\n\n")
	if len(paras) < 2 {
		return map[string][]string{}
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(paras[len(paras)-1]))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return map[string][]string{}
		}
		out[key] = append(out[key], strings.TrimSpace(value))
	}
	return out
}
