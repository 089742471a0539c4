package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
)

// ChangeInput starts a change run for one commit on a branch.
type ChangeInput struct {
	// Repo names a repos entry; empty for the repo block.
	Repo   string
	Branch string
	Commit string
	// UIURL is the Temporal Web UI base for links in notifications.
	UIURL string
	// Enqueued are the stacks whose queues the watcher put this run in, in
	// merge order; the run enters any others itself.
	Enqueued []string
}

// ChangeResult is how a run ended. Outcomes such as a rejection or a failed
// verification are results, not workflow errors.
type ChangeResult struct {
	State  string
	Reason string
	// RevertCommit and Restored are what a rollback did.
	RevertCommit string    `json:",omitempty"`
	Restored     []Restore `json:",omitempty"`
}

// DecisionRequest approves or rejects a waiting change. Only Signed counts:
// the other fields are what runs recorded before decisions were
// authenticated, kept so that their histories replay.
type DecisionRequest struct {
	// Signed is the decision with its proof (the Slack app's or the
	// person's SSH key); see package gate.
	Signed *gate.Signed `json:",omitempty"`

	Approve bool   `json:",omitempty"`
	User    string `json:",omitempty"`
	Comment string `json:",omitempty"`
	Via     string `json:",omitempty"`
	Email   string `json:",omitempty"`
}

// DecisionResult answers an accepted decision (the Update's return value).
type DecisionResult struct {
	State string
}

// Decision is a recorded decision.
type Decision struct {
	Approve bool
	User    string
	Comment string
	At      time.Time
	// Via is the user group that allowed User, if any.
	Via string `json:",omitempty"`
	// Auto is set when policy approved without a person.
	Auto bool
	// Counts are the requirements (indexes into Approval.Requirements)
	// an approval counts toward.
	Counts []int `json:",omitempty"`
	// Method is how the decision was authenticated (gate.MethodSlack or
	// gate.MethodSSH) and Key the SSH key's fingerprint.
	Method string `json:",omitempty"`
	Key    string `json:",omitempty"`
}

// Approval is what the run asks of approvers, derived from the plan and the
// stacks' policies.
type Approval struct {
	Required  bool
	Stacks    []string // stacks whose policy asks for a person
	Approvers []string // who may decide: allowed on every such stack
	FourEyes  bool
	Timeout   time.Duration
	Deadline  time.Time
	// Requirements, when policies require approvals, are every set of
	// approvals the run needs; decisions accumulate in Status.Approvals
	// until each is met. Empty: one decision by Approvers decides.
	Requirements []Requirement `json:",omitempty"`
	// PullRequest is how many approvals on the pull request make the
	// decision, when every stack that asks has approval: pull-request;
	// 0 otherwise.
	PullRequest int `json:",omitempty"`
}

// Step is one state the run entered, with when.
type Step struct {
	State string
	At    time.Time
}

// DriftInput starts a drift run of one stack.
type DriftInput struct {
	Stack string
	UIURL string
	// Policy overrides the stack's drift policy for this run (changeops
	// drift --heal); empty keeps it.
	Policy string `json:",omitempty"`
	// By is who started the run by hand; empty for the schedule.
	By string `json:",omitempty"`
}

// Status is everything the run knows, returned by contract.StatusQuery.
type Status struct {
	// Kind is contract.KindChange or contract.KindDrift.
	Kind string `json:",omitempty"`
	ID   string
	// RunID is the Temporal run a signed decision must name.
	RunID         string `json:",omitempty"`
	Branch        string
	Commit        activities.Commit
	ChangedPaths  []string
	Stacks        []string
	State         string
	Detail        string
	Plans         []activities.PlanResult
	Approval      Approval
	Decision      *Decision
	Refusals      []string
	Applies       []activities.ApplyResult
	Verifications []activities.VerifyResult
	RevertCommit  string
	// Undone are the changes, reverted on the branch since, that the run
	// subtracted from its commit's tree (its effective tree).
	Undone []string
	// Held are the stacks whose queues granted them to the run.
	Held []string
	// Restored lists, per stack, the last good commit a rollback applied.
	Restored []Restore
	// Batch is the batch that deployed the run's commit, or whose
	// decision ended it (rejected, expired), led by this run or another
	// (docs/batching.md); nil when the run deployed alone.
	Batch *contract.Batched `json:",omitempty"`
	// BatchCommits are the commits of the batch a leader asks approval
	// for, its own first: every one is shown to the approvers and bound
	// by four eyes.
	BatchCommits []activities.Commit `json:",omitempty"`
	// BatchPending is set on a queued run while the leader of its batch
	// waits for the batch's approval.
	BatchPending *contract.BatchPending `json:",omitempty"`
	Error        string
	Steps        []Step
	// Drift is what a drift run's check found.
	Drift *activities.DriftResult `json:",omitempty"`
	// Previewed compares the plans with the preview of the pull request
	// the commit merged (docs/pull-requests.md); nil when not compared.
	Previewed *activities.PreviewComparison `json:",omitempty"`
	// PullApprovals are the approvals on the pull request, when they were
	// read (approval: pull-request): whose count, and why others do not.
	PullApprovals *activities.PullApprovalsResult `json:",omitempty"`
	// Window is the run's change window: the last check, and the votes
	// to override it; nil until the run first checked (workflows/window.go).
	Window *WindowStatus `json:",omitempty"`
	// Approvals are the approvals accepted so far when the run needs
	// several (Approval.Requirements).
	Approvals []Decision `json:",omitempty"`
}

// PlanDigest names the plans a decision is for: a decision signed for
// other plans (before the run planned again) does not count. It is the
// SHA-256 of each stack's steps digest, in the run's order.
func (st *Status) PlanDigest() string {
	h := sha256.New()
	for _, p := range st.Plans {
		h.Write([]byte(p.Stack + " " + p.Steps + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Subject names the run for people: "change abc1234" or "the drift check
// of stack web".
func (st *Status) Subject() string {
	if st.Kind == contract.KindDrift {
		return "the drift check of stack " + strings.Join(st.Stacks, ", ")
	}
	return "change " + contract.ShortSHA(st.Commit.SHA)
}

// Restore is one stack put back by a rollback.
type Restore struct {
	Stack  string
	Commit string // the last good commit applied; empty when none was found
	Undone []string
	OK     bool
	Detail string
}

// WatcherInput is the watcher's state, carried across continue-as-new.
type WatcherInput struct {
	// Repo names a repos entry; empty for the repo block.
	Repo     string
	Branch   string
	LastSeen string
	UIURL    string
	// Held is set while a history rewrite waits for acknowledgement.
	Held *Rewrite
	// Outage is the reason polls fail, reported once, empty when healthy.
	Outage string
	// Pending are enqueue requests (contract.EnqueueRunSignal) the previous run
	// received but had not served when it continued as new.
	Pending []contract.QueueRequest `json:",omitempty"`
}

// Rewrite is a force push that dropped commits the watcher had seen.
type Rewrite struct {
	LastSeen string // the commit that is gone from the branch
	Head     string // the branch head when the rewrite was seen
	At       time.Time
}

// AckRequest acknowledges a held rewrite.
type AckRequest struct {
	User string
}

// WatcherStatus is what contract.WatcherStatusQuery returns.
type WatcherStatus struct {
	Branch   string
	LastSeen string
	Held     *Rewrite
	Outage   string
	LastPoll time.Time
}

// Requirement is one set of approvals a run needs: Count distinct people
// among Approvers. The stacks' own approvers are one (Count 1); each
// policy's require adds one (docs/policy.md#deny-warn-require).
type Requirement struct {
	// Who names the approvers for people: "an approver of web" or
	// "group dba".
	Who       string
	Approvers []string
	Count     int
	// Why is the policy rule that asked, and its message; empty for the
	// stacks' own approvers.
	Why string `json:",omitempty"`
}

func (q Requirement) String() string {
	s := fmt.Sprintf("%d from %s", q.Count, q.Who)
	if q.Why != "" {
		s += " (" + q.Why + ")"
	}
	return s
}
