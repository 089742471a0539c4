package starter

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/jsonout"
	"github.com/changeops/changeops/internal/policy"
	"github.com/changeops/changeops/workflows"
)

// Record is one change run as an auditor reads it: which commit, who wrote
// and who approved it, what the plan was (its digest and counts), what
// Pulumi did, how it was verified, whether it was reverted, and when each
// step happened.
type Record struct {
	ID string `json:"id"`
	// Kind is "change" or "drift": a drift record is a state change (or
	// a decision about one) that no commit made.
	Kind        string    `json:"kind"`
	Commit      string    `json:"commit"`
	Parent      string    `json:"parent"`
	Branch      string    `json:"branch"`
	Subject     string    `json:"subject"`
	AuthorName  string    `json:"author_name"`
	AuthorEmail string    `json:"author_email"`
	Stacks      []string  `json:"stacks"`
	State       string    `json:"state"`
	Approver    string    `json:"approver"`
	ApprovedVia string    `json:"approved_via,omitempty"`
	DecidedAt   time.Time `json:"decided_at,omitzero"`
	Comment     string    `json:"comment,omitempty"`
	// Approvals are everyone who approved, when policies required
	// several approvals (docs/policy.md); Approver is the last.
	Approvals    []string         `json:"approvals,omitempty"`
	Plans        []Plan           `json:"plans"`
	Updates      []Update         `json:"updates"`
	Checks       []Checked        `json:"checks"`
	RevertCommit string           `json:"revert_commit"`
	Restored     []string         `json:"restored"` // stack@commit put back by a rollback
	Steps        []workflows.Step `json:"steps"`
	// Drifted names, for a drift run, each resource that differed from
	// git: "op urn (properties)".
	Drifted []string `json:"drifted,omitempty"`
	Error   string   `json:"error,omitempty"`
	// Overrides are the votes to apply outside the change window or
	// inside a freeze ("person: reason"); Overridden is set when the run
	// applied on them (break glass).
	Overrides  []string `json:"overrides,omitempty"`
	Overridden bool     `json:"overridden,omitempty"`
	// Until ends a freeze record's freeze (kind freeze).
	Until time.Time `json:"until,omitzero"`
}

// Plan is a stack's approved plan: its digests and counts.
type Plan struct {
	Stack  string `json:"stack"`
	Digest string `json:"digest"` // SHA-256 of the rendered preview
	// Artifacts are the stack's config values that pin an artifact
	// (image tags and digests), "key=value".
	Artifacts []string `json:"artifacts"`
	Steps     string   `json:"steps"` // SHA-256 of the engine's steps
	Create    int      `json:"create"`
	Update    int      `json:"update"`
	Replace   int      `json:"replace"`
	Delete    int      `json:"delete"`
	// Policy is what the policies said of the plan: the policy set's
	// digest and each result (docs/policy.md); absent without policies.
	Policy *policy.Result `json:"policy,omitempty"`
}

// Update is what Pulumi's up did to a stack.
type Update struct {
	Stack   string `json:"stack"`
	Version int    `json:"version"` // the update's number in the stack's history (0 on DIY backends, which do not number them)
	Started string `json:"started"` // its start time in the stack's history (every backend)
	Create  int    `json:"create"`
	Update  int    `json:"update"`
	Replace int    `json:"replace"`
	Delete  int    `json:"delete"`
	Same    int    `json:"same"`
}

// Checked is one verification check's last outcome.
type Checked struct {
	Stack  string `json:"stack"`
	Check  string `json:"check"`
	Passed bool   `json:"passed"`
}

// auditQueryTimeout bounds the status query of each audited run.
const auditQueryTimeout = 15 * time.Second

// Audit reads the records of the runs f selects, newest first. A run's
// record comes from its status query, so a worker must be running; a run
// that cannot be queried is reported with what visibility knows and the
// reason in Error.
func Audit(ctx context.Context, c client.Client, f Filter) ([]Record, error) {
	runs, err := List(ctx, c, f)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(runs))
	for _, r := range runs {
		// A run no worker answers for (another deployment's, or one whose
		// worker is down) must not hold the export: its query is bounded
		// and it is reported with what visibility knows.
		qctx, cancel := context.WithTimeout(ctx, auditQueryTimeout)
		full, err := Status(qctx, c, r.ID)
		cancel()
		if err != nil {
			r.Error = "not read: " + err.Error()
			full = r
		}
		out = append(out, record(full))
	}
	return out, nil
}

func record(r Run) Record {
	rec := Record{ID: r.ID, Kind: r.Kind, Commit: r.Commit, Stacks: r.Stacks, State: r.State, Approver: r.Approver,
		RevertCommit: r.RevertCommit, AuthorEmail: r.Author, Subject: r.Subject, Error: r.Error,
		Plans: []Plan{}, Updates: []Update{}, Checks: []Checked{}, Restored: []string{}, Steps: []workflows.Step{}}
	st := r.Status
	if st == nil {
		if rec.Error == "" {
			rec.Error = r.Detail
		}
		return rec
	}
	rec.Parent, rec.Branch, rec.AuthorName = st.Commit.Parent, st.Branch, st.Commit.AuthorName
	if d := st.Decision; d != nil {
		rec.Approver, rec.ApprovedVia, rec.DecidedAt, rec.Comment = d.User, d.Via, d.At, d.Comment
	}
	for _, a := range st.Approvals {
		rec.Approvals = append(rec.Approvals, a.User)
	}
	for _, p := range st.Plans {
		rec.Plans = append(rec.Plans, Plan{Stack: p.Stack, Digest: p.Digest, Steps: p.Steps, Artifacts: append([]string{}, p.Artifacts...),
			Create: p.Create, Update: p.Update, Replace: p.Replace, Delete: p.Delete, Policy: p.Policy})
	}
	for _, a := range st.Applies {
		rec.Updates = append(rec.Updates, Update{Stack: a.Stack, Version: a.UpdateVersion, Started: a.UpdateStarted,
			Create: a.Create, Update: a.Update, Replace: a.Replace, Delete: a.Delete, Same: a.Same})
	}
	for _, v := range st.Verifications {
		rec.Checks = append(rec.Checks, checked(v)...)
	}
	for _, res := range st.Restored {
		if res.OK {
			rec.Restored = append(rec.Restored, res.Stack+"@"+res.Commit)
		}
	}
	rec.Steps = append(rec.Steps, st.Steps...)
	if w := st.Window; w != nil {
		for _, v := range w.Overrides {
			rec.Overrides = append(rec.Overrides, v.User+": "+v.Comment)
		}
		rec.Overridden = w.Overridden
	}
	if st.Drift != nil {
		for _, d := range st.Drift.Resources {
			line := d.Op + " " + d.URN
			if len(d.Properties) > 0 {
				line += " (" + strings.Join(d.Properties, ", ") + ")"
			}
			rec.Drifted = append(rec.Drifted, line)
		}
	}
	return rec
}

func checked(v activities.VerifyResult) []Checked {
	var out []Checked
	for _, c := range v.Results {
		out = append(out, Checked{Stack: v.Stack, Check: c.Check, Passed: c.Passed})
	}
	return out
}

// WriteJSONL writes one JSON object per record.
func WriteJSONL(w io.Writer, recs []Record) error {
	for _, r := range recs {
		if err := jsonout.Encode(w, r); err != nil {
			return err
		}
	}
	return nil
}

// csvHeader names WriteCSV's columns; lists are joined with ';'.
var csvHeader = []string{"id", "commit", "parent", "branch", "subject", "author_name", "author_email", "stacks", "state",
	"approver", "approved_via", "decided_at", "plan_digests", "artifacts", "creates", "updates", "replaces", "deletes",
	"pulumi_updates", "checks", "revert_commit", "restored", "started_at", "finished_at", "error", "kind", "drifted", "overrides", "policy"}

// WriteCSV writes a header and one row per record.
func WriteCSV(w io.Writer, recs []Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range recs {
		var digests, artifacts, versions, checks, policies []string
		var cr, up, rp, del int
		for _, p := range r.Plans {
			digests = append(digests, p.Stack+"="+p.Digest)
			for _, a := range p.Artifacts {
				artifacts = append(artifacts, p.Stack+":"+a)
			}
			cr, up, rp, del = cr+p.Create, up+p.Update, rp+p.Replace, del+p.Delete
			policies = append(policies, policyCells(p)...)
		}
		for _, u := range r.Updates {
			versions = append(versions, fmt.Sprintf("%s=%d@%s", u.Stack, u.Version, u.Started))
		}
		for _, c := range r.Checks {
			checks = append(checks, fmt.Sprintf("%s:%s=%t", c.Stack, c.Check, c.Passed))
		}
		var started, finished string
		if n := len(r.Steps); n > 0 {
			started, finished = stamp(r.Steps[0].At), stamp(r.Steps[n-1].At)
		}
		row := []string{r.ID, r.Commit, r.Parent, r.Branch, r.Subject, r.AuthorName, r.AuthorEmail,
			strings.Join(r.Stacks, ";"), r.State, r.Approver, r.ApprovedVia, stamp(r.DecidedAt),
			strings.Join(digests, ";"), strings.Join(artifacts, ";"), strconv.Itoa(cr), strconv.Itoa(up), strconv.Itoa(rp), strconv.Itoa(del),
			strings.Join(versions, ";"), strings.Join(checks, ";"), r.RevertCommit, strings.Join(r.Restored, ";"),
			started, finished, r.Error, r.Kind, strings.Join(r.Drifted, ";"), strings.Join(r.Overrides, ";"),
			strings.Join(policies, ";")}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// policyCells are a plan's policy results for the CSV: the set's digest,
// then "deny: …", "warn: …" and "require: …", each naming its rule.
func policyCells(p Plan) []string {
	r := p.Policy
	if r == nil {
		return nil
	}
	out := []string{p.Stack + " policies=" + r.Digest}
	for _, v := range r.Deny {
		out = append(out, p.Stack+" deny: "+v.String())
	}
	for _, v := range r.Warn {
		out = append(out, p.Stack+" warn: "+v.String())
	}
	for _, q := range r.Require {
		out = append(out, p.Stack+" require: "+q.String())
	}
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// FreezeRecords are the freezes' record as audit records (kind freeze),
// newest first: each freeze, unfreeze and freeze that ran out, with
// who (approver, by their key or Slack), when (decided_at) and why
// (comment). The freezes keep their newest 200 events.
func FreezeRecords(ctx context.Context, c client.Client, taskQueue string, since time.Time) ([]Record, error) {
	st, err := Freezes(ctx, c, taskQueue)
	if err != nil {
		return nil, err
	}
	var out []Record
	for i := len(st.Log) - 1; i >= 0; i-- {
		e := st.Log[i]
		if e.At.Before(since) {
			continue
		}
		stack := e.Stack
		if stack == "" {
			stack = "*"
		}
		out = append(out, Record{ID: contract.FreezesID(taskQueue), Kind: KindFreeze, State: e.Action, Stacks: []string{stack},
			Approver: e.By, ApprovedVia: e.Method, DecidedAt: e.At, Comment: e.Reason, Until: e.Until,
			Plans: []Plan{}, Updates: []Update{}, Checks: []Checked{}, Restored: []string{}, Steps: []workflows.Step{}})
	}
	return out, nil
}
