// Package contract is what changeops' workflows, activities, starter, CLI
// and Slack app agree on without importing each other: the names of
// workflows, signals, updates and queries, workflow IDs, run states,
// search attributes, and the payloads of the stack queues. Each name is
// in recorded histories and in scripts: renaming one is a breaking
// change.
package contract

import (
	"time"

	"go.temporal.io/sdk/temporal"
)

// Names of workflows, signals, updates and queries. Clients (the CLI, Slack,
// webhooks) script against these; they are part of the recorded histories,
// so renaming one is a breaking change.
const (
	ChangeWorkflowName  = "ChangeWorkflow"
	WatcherWorkflowName = "WatcherWorkflow"
	DriftWorkflowName   = "DriftWorkflow"

	// DecisionSignal carries an approval or rejection (Slack buttons).
	DecisionSignal = "decision"
	// DecisionUpdate carries the same, validated up front so the caller
	// hears at once whether it was accepted (the CLI).
	DecisionUpdate = "decide"
	// StatusQuery returns the run's Status.
	StatusQuery = "status"

	// PokeSignal asks the watcher to poll now (webhooks).
	PokeSignal = "poke"
	// AckRewriteUpdate resumes a watcher held by a history rewrite.
	AckRewriteUpdate = "ack-rewrite"
	// WatcherStatusQuery returns the watcher's WatcherStatus.
	WatcherStatusQuery = "watcher-status"
	// EnqueueRunSignal asks a branch's watcher to put a run it did not
	// start (one started by hand) into its stacks' queues (an
	// EnqueueRequest): the watcher is the one writer to its
	// stacks' queues, so every queue orders any two runs the same way.
	EnqueueRunSignal = "enqueue-run"

	// OverrideWindowUpdate carries one person's signed vote to apply a
	// run waiting for its window now (break glass; gate.ActionOverride).
	OverrideWindowUpdate = "override-window"
)

// States of a change run, as shown in ChangeState and the CLI.
const (
	StatePlanning         = "planning"
	StateQueued           = "queued"
	StateAwaitingApproval = "awaiting-approval"
	// StateWaitingForWindow: approved, and waiting for its stacks' change
	// window to open or their freeze to end before applying.
	StateWaitingForWindow = "waiting-for-window"
	StateApplying         = "applying"
	StateVerifying        = "verifying"
	StateSucceeded        = "succeeded"
	StateNoOp             = "no-op"
	StateRejected         = "rejected"
	// StatePolicyDenied: a policy denied the plan; nobody was asked and
	// nothing was applied (docs/policy.md).
	StatePolicyDenied   = "policy-denied"
	StateExpired        = "expired"
	StateRollingBack    = "rolling-back"
	StateRolledBack     = "rolled-back"
	StateRollbackFailed = "rollback-failed"
	StateFailed         = "failed"

	// States of a drift run (a drift run also passes through queued,
	// awaiting-approval, applying and verifying, and can end no-op or
	// failed).
	StateDriftChecking = "drift-checking"
	StateDriftNone     = "drift-none"     // the stack matches git
	StateDriftFound    = "drift-found"    // it does not, and was left as it is
	StateDriftHealed   = "drift-healed"   // git was re-applied and verified
	StateDriftAccepted = "drift-accepted" // a person accepted the difference
)

// Kinds of run, in Status.Kind.
const (
	KindChange = "" // a merged commit's change run
	KindDrift  = "drift"
)

// Search attributes the design names, typed once. Keyword kinds for IDs: the
// String kind is tokenised text and would match commit prefixes loosely.
var (
	ChangeCommit   = temporal.NewSearchAttributeKeyKeyword("ChangeCommit")
	ChangeBranch   = temporal.NewSearchAttributeKeyKeyword("ChangeBranch")
	ChangeStacks   = temporal.NewSearchAttributeKeyKeywordList("ChangeStacks")
	ChangeAuthor   = temporal.NewSearchAttributeKeyKeyword("ChangeAuthor")
	ChangeState    = temporal.NewSearchAttributeKeyKeyword("ChangeState")
	ChangeApprover = temporal.NewSearchAttributeKeyKeyword("ChangeApprover")
	// ChangeRevertCommit is the revert commit a rollback pushed.
	ChangeRevertCommit = temporal.NewSearchAttributeKeyKeyword("ChangeRevertCommit")
	// ChangeRestoredCommits are the last good commits a rollback restored.
	ChangeRestoredCommits = temporal.NewSearchAttributeKeyKeywordList("ChangeRestoredCommits")
)

// SearchAttributes lists every key for registration at start-up.
var SearchAttributes = []temporal.SearchAttributeKey{
	ChangeCommit, ChangeBranch, ChangeStacks, ChangeAuthor, ChangeState, ChangeApprover, ChangeRevertCommit,
	ChangeRestoredCommits,
}

// ChangeWorkflowID is the one ID a commit's run can have, so a webhook retry
// and a poll that both see the commit start one run.
func ChangeWorkflowID(branch, sha string) string { return ChangeID("", branch, sha) }

// ChangeID is ChangeWorkflowID for any repository: a repos entry's name
// comes first (the repo block has none, so its IDs read as the design's).
func ChangeID(repo, branch, sha string) string {
	if repo == "" {
		return "change/" + branch + "/" + sha
	}
	return "change/" + repo + "/" + branch + "/" + sha
}

// DriftScheduleID names a stack's drift schedule; the runs it starts are
// named after it with the time appended.
func DriftScheduleID(stack string) string { return "drift/" + stack }

// DriftID names a drift run started by hand, to the millisecond: two
// checks asked for in one second are two runs.
func DriftID(stack string, at time.Time) string {
	return "drift/" + stack + "/" + at.UTC().Format("20060102T150405.000Z")
}

// WatcherWorkflowID names the watcher of a branch of the repo block.
func WatcherWorkflowID(branch string) string { return WatcherID("", branch) }

// WatcherID names the watcher of a repository's branch.
func WatcherID(repo, branch string) string {
	if repo == "" {
		return "watcher/" + branch
	}
	return "watcher/" + repo + "/" + branch
}

// Names of the freezes workflow (docs/windows.md).
const (
	FreezesWorkflowName = "FreezesWorkflow"
	// FreezeUpdate and UnfreezeUpdate carry a signed FreezeRequest.
	FreezeUpdate   = "freeze"
	UnfreezeUpdate = "unfreeze"
	// FreezesQuery returns the FreezesState.
	FreezesQuery = "freezes"
	// WaitingSignal registers a run that waits for a freeze to end (a
	// Waiter): it is woken when a freeze is lifted or runs out.
	WaitingSignal = "waiting"
	// WindowRecheckSignal wakes a run waiting for its window to check
	// again.
	WindowRecheckSignal = "window-recheck"
)

// FreezesID is the one freezes workflow of a deployment (its task queue).
func FreezesID(taskQueue string) string { return "freezes/" + taskQueue }

// ShortSHA is a commit as messages, logs and workflow summaries show it:
// its first seven characters.
func ShortSHA(sha string) string { return sha[:min(7, len(sha))] }
