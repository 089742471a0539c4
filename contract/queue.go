package contract

import (
	"time"
)

// Names of the per-stack queue (docs/runs.md, step 2).
const (
	StackQueueWorkflowName = "StackQueueWorkflow"
	// EnqueueSignal puts a run in a stack's queue (a QueueEntry).
	EnqueueSignal = "enqueue"
	// ReleaseSignal gives the stack back (a Release).
	ReleaseSignal = "release"
	// GrantSignal tells a run it holds a stack (a Grant).
	GrantSignal = "grant"
	// QueueStatusQuery returns the queue's QueueState.
	QueueStatusQuery = "queue-status"
	// BatchedSignal tells a waiting run that a batch deployed its commit
	// (a Batched; docs/batching.md).
	BatchedSignal = "batched"
	// BatchPendingSignal tells a waiting run that the batch it is in
	// waits for an approval its leader asks for (a BatchPending).
	BatchPendingSignal = "batch-pending"
)

// MaxBehind bounds how many waiting runs a batch may take: config.MaxBatch,
// which contract does not import.
const MaxBehind = 100

// QueueID is the one queue a stack has.
func QueueID(stack string) string { return "queue/" + stack }

// QueueEntry is a run waiting for, or holding, a stack.
type QueueEntry struct {
	RunID  string
	Commit string
	At     time.Time // when it entered the queue, or was granted the stack
	// Alone: the run needs this stack and no other, so it may join a
	// batch (docs/batching.md). Entries from before batching are not.
	Alone bool
}

// Deployed is a state of a stack that a run applied and verified: the
// effective tree of Commit (its tree minus Undone).
type Deployed struct {
	Commit string
	Undone []string
	RunID  string
	At     time.Time
}

// Grant tells a run it holds Stack, and what the stack last held that was
// good, for a rollback.
type Grant struct {
	Stack    string
	LastGood *Deployed
}

// Release gives a stack back; Deployed is set when the run succeeded and
// the stack now holds a new good state.
type Release struct {
	RunID    string
	Deployed *Deployed
	// Batched are the waiting runs the holder deployed in its batch: they
	// leave the queue with it.
	Batched []string
}

// Batched tells a waiting run that a batch deployed its commit, or that
// the batch's decision ended it, and how that batch ended for it.
type Batched struct {
	Leader       string // the run that deployed the batch
	LeaderCommit string
	Head         string   // the batch's newest commit, whose effective tree was applied
	Members      []string // the batch's commits, oldest first
	State        string   // the run's outcome
	Reason       string
	// Bisected: the batch failed and was bisected; Failure and Revert,
	// when bisection found the run's commit broke it: why, and the revert
	// commit pushed for it.
	Bisected bool   `json:",omitempty"`
	Failure  string `json:",omitempty"`
	Revert   string `json:",omitempty"`
	// Outcomes, in the leader's own status, are what bisection decided
	// for each member it judged: a member reads its outcome there, not
	// from the signal, which anyone who can reach the namespace can send.
	Outcomes []BatchOutcome `json:",omitempty"`
	// Decision is the batch's decision, when its plan needed one: the
	// leader asked once for every change in it, so it is each member's
	// decision for the plan that was applied (docs/batching.md#approvals).
	Decision *BatchDecision `json:",omitempty"`
	// Timeout is how long the leader waited for that decision, when
	// nobody decided (State expired).
	Timeout time.Duration `json:",omitempty"`
}

// BatchOutcome is how a bisected batch ended for one of its commits.
type BatchOutcome struct {
	Commit  string
	State   string
	Failure string `json:",omitempty"`
	Revert  string `json:",omitempty"`
}

// BatchDecision is who decided a batch, and how.
type BatchDecision struct {
	Approve bool
	User    string
	Comment string `json:",omitempty"`
	At      time.Time
	Via     string `json:",omitempty"` // the user group that allowed User
	Method  string `json:",omitempty"` // how it was authenticated
	Auto    bool   `json:",omitempty"` // approved by policy, no person asked
}

// BatchPending tells a waiting run that its batch's leader asks for one
// approval covering it: decisions go to the leader's run.
type BatchPending struct {
	Leader       string
	LeaderCommit string
	Head         string
	Changes      int // how many changes the batch holds
	Deadline     time.Time
}

// QueueState is the queue's whole state, carried across continue-as-new
// and returned by QueueStatusQuery.
type QueueState struct {
	Stack    string
	Holder   *QueueEntry
	Waiting  []QueueEntry // FIFO: merge order
	LastGood *Deployed
	// ProbeEvery is how often the queue checks that its holder still runs.
	ProbeEvery time.Duration
	// Skipped reports the latest runs the queue moved past because they had
	// ended without giving the stack back (newest last, bounded).
	Skipped []string
}

// EnqueueRequest asks for places in stacks' queues, in order.
type EnqueueRequest struct {
	Entries []QueueRequest
}

// QueueRequest is one run entering one stack's queue.
type QueueRequest struct {
	Stack  string
	RunID  string
	Commit string
	Alone  bool // the run needs no other stack (QueueEntry.Alone)
}
