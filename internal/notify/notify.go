// Package notify sends a change run's step messages to people: always to the
// log, and to Slack when a bot token is configured. A notifier that fails is
// reported to the caller, which retries and then gives up; a notification
// never decides the outcome of a change.
package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/changeops/changeops/contract"
)

// Kind says what an event reports, so that a renderer can lay it out (a
// plan as counts and a diff, an approval request with buttons).
type Kind string

const (
	KindReceived        Kind = "received"         // the run saw its commit
	KindPlanned         Kind = "planned"          // Plans holds each stack's preview
	KindPlanChanged     Kind = "plan-changed"     // planning again after approval
	KindApproval        Kind = "approval"         // Ask: waiting for a decision
	KindDecision        Kind = "decision"         // Decision: approved or rejected
	KindApprovalCounted Kind = "approval-counted" // one of several approvals the run needs
	KindApplying        Kind = "applying"         // up is running
	KindApplied         Kind = "applied"          // up finished on every stack
	KindVerified        Kind = "verified"         // Checks of one stack passed
	KindRollingBack     Kind = "rolling-back"     // a rollback started, Detail says why
	KindRevert          Kind = "revert"           // a revert commit is on the branch
	KindRevertConflict  Kind = "revert-conflict"  // the revert conflicts in Detail's paths
	KindRestored        Kind = "restored"         // a stack is back at its last good state
	KindFinished        Kind = "finished"         // the run ended; State says how
	KindRetrying        Kind = "retrying"         // a step failed and is retried, or waits for a lock
	KindDrift           Kind = "drift"            // a drift check found differences: Plans
	KindWindow          Kind = "window"           // waiting for a change window or a freeze, or overriding it
	// Events that belong to no change run: a branch's watcher (rewrite,
	// outage) or a stack's queue (a holder skipped).
	KindBranch Kind = "branch"
	KindQueue  Kind = "queue"
	// KindFreeze: a stack (or every stack) frozen, unfrozen, or a freeze
	// that ran out; State is the action, Step says what and who, Detail
	// why.
	KindFreeze Kind = "freeze"
)

// Event is one step of a change run, as people should hear of it. It holds
// no secrets: workflows build it from recorded results only.
type Event struct {
	RunID   string
	Branch  string
	Commit  string
	Subject string
	Author  string
	Stacks  []string
	State   string
	Kind    Kind `json:",omitempty"`
	// Step says what happened ("plan ready", "approved by alice").
	Step string
	// Detail is optional longer text (a failure reason, changed paths).
	Detail string
	// URL links to the run in the Temporal UI.
	URL string
	// Thread is where the run's earlier messages went; empty for its first
	// event and for events that belong to no run.
	Thread Thread `json:",omitzero"`
	// Structured content for the kinds that have it.
	Plans    []Plan    `json:",omitempty"`
	Ask      *Ask      `json:",omitempty"`
	Decision *Decision `json:",omitempty"`
	Checks   []Check   `json:",omitempty"`
}

// MaxDiff bounds the characters of a plan's diff that a notification
// carries: what a chat message can show. The whole plan stays in the run's
// status.
const MaxDiff = 3000

// Plan is one stack's preview, as a notification shows it.
type Plan struct {
	Stack                                 string
	Create, Update, Replace, Delete, Same int
	Diff                                  string
	DiffTruncated                         bool
	// What the policies said of the plan (docs/policy.md), each line
	// naming its rule; PolicyDigest names the policy set.
	Denied       []string `json:",omitempty"`
	Warnings     []string `json:",omitempty"`
	Requires     []string `json:",omitempty"`
	PolicyDigest string   `json:",omitempty"`
}

// Destructive says whether the plan replaces or deletes anything.
func (p Plan) Destructive() bool { return p.Replace > 0 || p.Delete > 0 }

// Ask is a request for a decision.
type Ask struct {
	Approvers []string
	// Requirements are the approvals needed, when policies ask for more
	// than one decision ("2 from group dba (…)").
	Requirements []string `json:",omitempty"`
	FourEyes     bool
	Deadline     time.Time
	// Question, ApproveLabel and RejectLabel word the request when it is
	// not about a change (drift: "Re-apply git" or "Accept"); empty means
	// the change run's wording.
	Question     string `json:",omitempty"`
	ApproveLabel string `json:",omitempty"`
	RejectLabel  string `json:",omitempty"`
	// Execution and Plan are the Temporal run and the digest of the plan
	// being asked about: a button binds its click to them, so a click on
	// an older message never decides a newer run or plan.
	Execution string `json:",omitempty"`
	Plan      string `json:",omitempty"`
	// Batch lists every change one decision covers when the run asks
	// for a batch (docs/batching.md#approvals), oldest first, one line
	// each: "sha subject (author)", built from bounded commit fields.
	Batch []string `json:",omitempty"`
}

// Decision is who decided a run, and how.
type Decision struct {
	Approve bool
	User    string
	Comment string
	At      time.Time
	// Auto: policy approved, no person was asked.
	Auto bool
}

// Check is one verification check's outcome.
type Check struct {
	Stack  string
	Name   string
	Passed bool
	Detail string
}

// Thread is where a run's messages live in a chat: the parent message that
// shows the run's state, and the message holding its approval buttons
// while a decision is pending. The workflow keeps it between events.
type Thread struct {
	Channel    string `json:",omitempty"`
	ParentTS   string `json:",omitempty"`
	State      string `json:",omitempty"` // the state the parent shows
	ApprovalTS string `json:",omitempty"`
}

// Delivery is one event on its way out. Thread starts as the event's and
// notifiers that thread messages update it; Checkpoint, when set, records
// progress durably so that a retried attempt never posts the run's parent
// message twice.
type Delivery struct {
	Event  Event
	Thread Thread
	// Attempt counts the tries at this delivery, from 1.
	Attempt    int
	Checkpoint func(Thread) `json:"-"`
}

// Save records the delivery's progress (see Checkpoint).
func (d *Delivery) Save() {
	if d.Checkpoint != nil {
		d.Checkpoint(d.Thread)
	}
}

// Text renders the event as plain text (console, Slack fallback).
func (e Event) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s %q (%s): %s", e.State, contract.ShortSHA(e.Commit), e.Subject, strings.Join(e.Stacks, ", "), e.Step)
	if e.Detail != "" {
		b.WriteString("\n")
		b.WriteString(e.Detail)
	}
	if e.URL != "" {
		b.WriteString("\n")
		b.WriteString(e.URL)
	}
	return b.String()
}

// Notifier delivers events.
type Notifier interface {
	Notify(ctx context.Context, d *Delivery) error
}

// Multi sends to every notifier and joins their errors.
type Multi []Notifier

func (m Multi) Notify(ctx context.Context, d *Delivery) error {
	var errs []error
	for _, n := range m {
		if err := n.Notify(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
