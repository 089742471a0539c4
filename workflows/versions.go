package workflows

// Versioned changes to the workflows' shapes. Every workflow.GetVersion
// call names one of these; TestVersionedChangesHaveHistories replays the
// recorded histories under testdata and checks that each is reached by
// at least one of them, so the branch a run in flight takes is proven to
// replay.
//
// When one may go: a change run or drift run is pinned to the build that
// started it (register.go), so a branch that only runs of older builds
// take can go once no open run is pinned to such a build or was started
// before Worker Deployments (`changeops deployment describe`, and the
// list of runs older than the upgrade). The watcher, the stack queues and
// the freezes move from build to build and continue as new: their
// branches can go once every one of them has continued as new on a build
// that took the new branch. Remove a branch with the histories that
// cover only it.
const (
	// Change runs.
	VersionAsyncNotifications      = "async-notifications"       // old: each notification awaited in line
	VersionStackQueues             = "stack-queues"              // old: no stack queues, no effective tree
	VersionSkipEmptyPlans          = "skip-empty-plans"          // old: an empty plan still asks and applies
	VersionRollback                = "rollback"                  // old: a failed change ends failed, nothing restored or reverted
	VersionRestoredCommitAttribute = "restored-commit-attribute" // old: the restored commit is not a search attribute
	VersionUnappliedNoRollback     = "unapplied-no-rollback"     // old: an up that never began is rolled back
	VersionAskQueuesAgain          = "ask-queues-again"          // old: a queued run waits for its grant forever
	VersionChangeWindows           = "change-windows"            // old: no change windows or freezes
	VersionSignedDecisionPrefix    = "signed-decisions-"         // + the signal's number; old: decision signals accepted unsigned
	VersionPolicyApprovals         = "policy-approvals"          // old: one decision decides; policies' require is not asked
	VersionHealOverrideAsks        = "heal-override-asks"        // drift runs; old: --heal heals at once whatever the stack's policy
	VersionReportPollOutage        = "report-poll-outage"        // watcher; old: a failing poll is only logged
	VersionEnqueueRuns             = "enqueue-runs"              // watcher; old: runs do not enter stack queues
	VersionHoldOnRewrite           = "hold-on-rewrite"           // watcher; old: a force push is reported and polling continues
	VersionAnnounceFreezes         = "announce-freezes"          // freezes; old: freezes and unfreezes are only logged
	VersionComparePreview          = "compare-preview"           // old: plans are not compared with the pull request's preview
	VersionPullRequestApprovals    = "pull-request-approvals"    // old: approval: pull-request did not exist
	VersionBatches                 = "batches"                   // old: each run deploys its own commit alone
	VersionCheckBatched            = "check-batched"             // old: a batched signal is taken at its word
	VersionBatchApprovals          = "batch-approvals"           // old: only auto stacks batch, a batch needing approval is dropped, bisection ignores windows and takes an engine failure for a failing tree
	VersionLocalSteps              = "local-steps"               // old: Inspect, Effective and Window are scheduled activities, and so is the last notification
)

// versionedChanges lists the change IDs above, for the replay test.
var versionedChanges = []string{
	VersionAsyncNotifications, VersionStackQueues, VersionSkipEmptyPlans, VersionRollback,
	VersionRestoredCommitAttribute, VersionUnappliedNoRollback, VersionAskQueuesAgain, VersionChangeWindows,
	VersionSignedDecisionPrefix, VersionHealOverrideAsks, VersionReportPollOutage, VersionEnqueueRuns,
	VersionHoldOnRewrite, VersionAnnounceFreezes, VersionPolicyApprovals, VersionComparePreview, VersionPullRequestApprovals,
	VersionBatches, VersionCheckBatched, VersionBatchApprovals, VersionLocalSteps,
}
