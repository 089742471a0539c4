package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The rules a policy may return.
const (
	// KindDeny ends the run policy-denied before anyone is asked.
	KindDeny = "deny"
	// KindWarn is shown with the plan.
	KindWarn = "warn"
	// KindRequire asks for more approvals: a group or named people, a
	// count.
	KindRequire = "require"
)

// Bounds of what an evaluation returns: every string comes from a policy
// or a plan, both written by whoever can merge, and goes to the run's
// history, status, Slack and logs.
const (
	maxMessage  = 500
	maxRule     = 120
	maxResource = 400
	maxName     = 120
	maxPeople   = 20
	maxCount    = 10
)

// Limits bound an evaluation; zero fields take the defaults.
type Limits struct {
	// Timeout bounds one evaluation (default 10s): a policy that loops
	// over a large plan fails closed rather than holding the worker.
	Timeout time.Duration
	// MaxResults bounds the results of each kind (default 50); more are
	// counted in Result.Omitted.
	MaxResults int
}

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = 10 * time.Second
	}
	if l.MaxResults <= 0 {
		l.MaxResults = 50
	}
	return l
}

// Result is what the policies said of one plan: plain, bounded data that a
// run records.
type Result struct {
	// Digest names the policy set (Set.Digest); empty when there was none.
	Digest  string
	Deny    []Violation   `json:",omitempty"`
	Warn    []Violation   `json:",omitempty"`
	Require []Requirement `json:",omitempty"`
	// Omitted counts results beyond Limits.MaxResults.
	Omitted int `json:",omitempty"`
}

// Violation is one deny or warn.
type Violation struct {
	// Rule is the package and rule that said it: "buckets.deny", or
	// "deny" in package changeops itself.
	Rule     string
	Origin   string // OriginOrg or OriginRepo
	Message  string
	Resource string `json:",omitempty"` // a URN, when the policy named one
}

// Requirement is one require: Count distinct approvals from Group (a
// people group or a Slack user group) or from People.
type Requirement struct {
	Rule    string
	Origin  string
	Message string   `json:",omitempty"`
	Group   string   `json:",omitempty"`
	People  []string `json:",omitempty"`
	Count   int
	// Approvers are who counts toward it, resolved from the worker's
	// groups and people when the plan was judged (the caller fills them).
	Approvers []string `json:",omitempty"`
}

// String reads "2 approvals from group dba (policy buckets.require: …)".
func (r Requirement) String() string {
	from := "group " + r.Group
	if r.Group == "" {
		from = strings.Join(r.People, ", ")
	}
	s := fmt.Sprintf("%d approval", r.Count)
	if r.Count != 1 {
		s += "s"
	}
	s += " from " + from + " (" + r.Origin + " policy " + r.Rule
	if r.Message != "" {
		s += ": " + r.Message
	}
	return s + ")"
}

// String reads "buckets.deny: public bucket (urn:…)".
func (v Violation) String() string {
	s := v.Origin + " policy " + v.Rule + ": " + v.Message
	if v.Resource != "" {
		s += " (" + v.Resource + ")"
	}
	return s
}

// EvalError is an evaluation that failed (a conflict between rules, a
// builtin's error, the time limit, a result of the wrong shape). Runs
// fail closed on it.
type EvalError struct {
	Origin string
	Err    error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("evaluate the %s policies: %s", e.Origin, bound(e.Err.Error(), maxMessage))
}

func (e *EvalError) Unwrap() error { return e.Err }

// Evaluate judges one plan. Both origins' results count: an organisation
// deny stands whatever the repository's policies say.
func (s *Set) Evaluate(ctx context.Context, in Input) (Result, error) {
	if s.Empty() {
		return Result{}, nil
	}
	doc, err := toValue(in)
	if err != nil {
		return Result{}, fmt.Errorf("policy input: %w", err)
	}
	res := Result{Digest: s.Digest}
	for _, p := range s.parts {
		if err := s.evaluate(ctx, p, doc, &res); err != nil {
			return Result{}, &EvalError{Origin: p.origin, Err: err}
		}
	}
	return res, nil
}

func (s *Set) evaluate(ctx context.Context, p compiled, doc ast.Value, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, s.Limits.Timeout)
	defer cancel()
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(doc))
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("took longer than %s: simplify the rules, or raise policy.timeout", s.Limits.Timeout)
		}
		return err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil
	}
	root, _ := rs[0].Expressions[0].Value.(map[string]any)
	for _, path := range p.rules {
		v, ok := lookup(root, path)
		if !ok {
			continue // a rule that is undefined for this input
		}
		name := bound(strings.Join(path, "."), maxRule)
		kind := path[len(path)-1]
		if err := s.collect(kind, name, p.origin, v, res); err != nil {
			return fmt.Errorf("rule %s: %w", name, err)
		}
	}
	return nil
}

// collect reads one rule's value into res. A rule is a set of messages
// (strings) or of objects with msg and, for deny and warn, resource; for
// require, group or people, and count. A boolean deny that is true is one
// violation without a message.
func (s *Set) collect(kind, rule, origin string, v any, res *Result) error {
	var items []any
	switch v := v.(type) {
	case []any:
		items = v
	case bool:
		if v && kind != KindRequire {
			items = []any{rule}
		}
	case string, map[string]any:
		items = []any{v}
	default:
		return fmt.Errorf("is a %T: make it a set of messages, e.g. `%s contains msg if { … }`", v, kind)
	}
	for _, it := range items {
		var msg, resource string
		var obj map[string]any
		switch it := it.(type) {
		case string:
			msg = it
		case map[string]any:
			obj = it
			msg, _ = it["msg"].(string)
			resource, _ = it["resource"].(string)
		default:
			return fmt.Errorf("returned a %T: return a message or an object with msg", it)
		}
		switch kind {
		case KindDeny, KindWarn:
			list := &res.Deny
			if kind == KindWarn {
				list = &res.Warn
			}
			if len(*list) >= s.Limits.MaxResults {
				res.Omitted++
				continue
			}
			*list = append(*list, Violation{Rule: rule, Origin: origin, Message: bound(msg, maxMessage), Resource: bound(resource, maxResource)})
		case KindRequire:
			r, err := requirement(obj)
			if err != nil {
				return err
			}
			r.Rule, r.Origin, r.Message = rule, origin, bound(msg, maxMessage)
			// Approvals must not be lost to the bound, so requirements
			// asking the same are counted once, and more distinct ones
			// than the bound fail closed.
			if slices.ContainsFunc(res.Require, func(q Requirement) bool {
				return q.Group == r.Group && slices.Equal(q.People, r.People) && q.Count >= r.Count
			}) {
				continue
			}
			if len(res.Require) >= s.Limits.MaxResults {
				return fmt.Errorf("requires more than %d distinct approvals: return one requirement per group or set of people, not one per resource", s.Limits.MaxResults)
			}
			res.Require = append(res.Require, r)
		}
	}
	return nil
}

// requirement reads a require object: {"group": "dba", "count": 2} or
// {"people": ["alice", "bob"]}; count defaults to 1.
func requirement(obj map[string]any) (Requirement, error) {
	if obj == nil {
		return Requirement{}, errors.New(`returned a message: return an object such as {"group": "dba", "count": 2, "msg": "…"}`)
	}
	var r Requirement
	group, _ := obj["group"].(string)
	r.Group = bound(group, maxName)
	if people, ok := obj["people"].([]any); ok {
		for _, p := range people {
			name, ok := p.(string)
			if !ok || name == "" {
				return r, errors.New("people must be a list of names")
			}
			if len(r.People) < maxPeople {
				r.People = append(r.People, bound(name, maxName))
			}
		}
		slices.Sort(r.People)
		r.People = slices.Compact(r.People)
	}
	if (r.Group == "") == (len(r.People) == 0) {
		return r, errors.New(`name either a group or people: {"group": "dba"} or {"people": ["alice", "bob"]}`)
	}
	r.Count = 1
	if c, ok := obj["count"]; ok {
		n, ok := c.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil || i < 1 || i > maxCount {
			return r, fmt.Errorf("count %v must be a whole number from 1 to %d", c, maxCount)
		}
		r.Count = int(i)
	}
	if len(r.People) > 0 && r.Count > len(r.People) {
		return r, fmt.Errorf("asks for %d approvals from %d people", r.Count, len(r.People))
	}
	return r, nil
}

func lookup(root map[string]any, path []string) (any, bool) {
	var v any = root
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// toValue turns the input into OPA's value, once per evaluation rather
// than once per origin.
func toValue(in Input) (ast.Value, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return ast.ValueFromReader(bytes.NewReader(b))
}

// bound cuts s to n bytes at a rune boundary, marking the cut.
func bound(s string, n int) string {
	// A policy's text reaches terminals, Slack and one-line records: a
	// line break would forge a line of its own, an escape sequence would
	// drive the terminal. Line breaks become spaces, other control
	// characters go.
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
