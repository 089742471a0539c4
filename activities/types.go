package activities

import (
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/notify"
	"github.com/changeops/changeops/internal/policy"
)

// Error types that workflows and retry policies name, each in one place.
const (
	// Bad input: never retried.
	ErrCommitNotFound = "CommitNotFound"
	ErrNotOnBranch    = "CommitNotOnBranch"
	ErrStackInvalid   = "StackInvalid"
	// ErrPulumiProgram: the engine reported a known program or input
	// error (compilation, configuration, a missing plugin or resource
	// type): it would fail the same way again.
	ErrPulumiProgram = "PulumiProgramError"
	// ErrPulumiTransient: any other engine failure (a cloud API's
	// throttling or 5xx, a dropped connection, eventual consistency):
	// retried for the stack's apply_retry_for.
	ErrPulumiTransient = "PulumiTransient"
	// ErrStackLocked: another process holds the stack's lock: waited for
	// the stack's lock_wait.
	ErrStackLocked = "PulumiStackLocked"
	// ErrPulumiUnavailable: the CLI could not start: retried like a
	// transient failure, since it may be reinstalled.
	ErrPulumiUnavailable = "PulumiUnavailable"
	// ErrPulumiRecovery: clearing what a dead attempt left failed.
	ErrPulumiRecovery = "PulumiRecovery"
	ErrGitAuth        = "GitAuthRefused"
	// ErrDependsOnReverted: a commit's tree builds on a change that a
	// revert has since undone, so its effective tree cannot be built.
	ErrDependsOnReverted = "DependsOnRevertedChange"
	// ErrPlanChanged: the stack would change differently from the plan
	// that was approved; the run plans again and asks again.
	ErrPlanChanged = "PlanChanged"
	// ErrPolicyInvalid: a policy does not compile or failed to evaluate:
	// the run fails closed, never allowed.
	ErrPolicyInvalid = "PolicyInvalid"
)

// ApplyFailure are the details of a failed Apply: whether any attempt of
// it had begun changing resources. A change whose up never began has
// nothing to roll back.
type ApplyFailure struct {
	Began bool
}

// Commit describes a commit for people and for the run's records.
type Commit struct {
	SHA         string
	Parent      string // first parent; empty for a root commit
	Subject     string
	AuthorName  string
	AuthorEmail string
	// The committer is who put the commit on the branch (on a forge
	// merge, the person who merged); four eyes compares both.
	CommitterName  string `json:",omitempty"`
	CommitterEmail string `json:",omitempty"`
	When           time.Time
}

// InspectInput asks what a commit changes.
type InspectInput struct {
	Repo   string // a repos entry's name; empty for the repo block
	Branch string
	Commit string
}

// CommitsInput names commits of a branch, oldest first (Commits).
type CommitsInput struct {
	Repo    string // a repos entry's name; empty for the repo block
	Branch  string
	Commits []string
}

// InspectResult is the commit and the configured stacks it touches, with a
// snapshot of their settings so that the run keeps the policy it started
// with even if the configuration changes while it waits.
type InspectResult struct {
	Commit Commit
	// ChangedPaths are the first MaxChangedPaths paths the commit changed
	// (history payloads stay small however big the commit); ChangedCount is
	// how many there are in all.
	ChangedPaths []string
	ChangedCount int
	Stacks       []config.Stack // sorted by name
	// Forge says the repository has a forge: the run compares its plans
	// with the preview of the pull request it merged.
	Forge bool `json:",omitempty"`
}

// MaxChangedPaths bounds the paths an InspectResult carries.
const MaxChangedPaths = 100

// StackInput names a stack at a commit's effective tree.
type StackInput struct {
	RunID  string
	Stack  config.Stack
	Commit string
	// Undone are the changes subtracted from the commit's tree, in order
	// (EffectiveResult.Undone); empty deploys the commit's own tree.
	Undone []string
	// Approved, for Apply, is the Steps digest of the approved plan: up
	// runs only if a fresh preview still matches it.
	Approved string
	// Refresh makes previews and up read the live state first: a drift
	// check, and re-applying git over drift.
	Refresh bool `json:",omitempty"`
	// Notice is the run's message as it stood when the step was scheduled
	// (its commit, stacks and Slack thread): a failure that will be
	// retried is announced in that thread. Nil announces nothing.
	Notice *notify.Event `json:",omitempty"`
}

// PlanResult is a preview of one stack.
type PlanResult struct {
	Stack   string
	Create  int
	Update  int
	Replace int
	Delete  int
	Same    int
	// Diff is the rendered preview, cut to MaxDiffBytes.
	Diff          string
	DiffTruncated bool
	// Steps is the SHA-256 of the steps the engine would take (operation,
	// URN, changed keys, new inputs): the same whatever the CLI prints
	// around them, so Apply can check it is applying what was approved.
	Steps string
	// Digest is the SHA-256 of the whole rendered preview.
	Digest string
	// Artifacts are the stack config values that pin an artifact (an
	// image tag or digest), "key=value", for the audit.
	Artifacts []string `json:",omitempty"`
	// PulumiVersion is the version of the Pulumi CLI that planned it.
	PulumiVersion string `json:",omitempty"`
	// Policy is what the policies said of the plan (docs/policy.md);
	// nil when no policy is configured.
	Policy *policy.Result `json:",omitempty"`
}

// Destructive says whether the plan replaces or deletes anything.
func (p PlanResult) Destructive() bool { return p.Replace > 0 || p.Delete > 0 }

// Changes counts the operations that change something.
func (p PlanResult) Changes() int { return p.Create + p.Update + p.Replace + p.Delete }

// ApplyResult is the outcome of one stack's up.
type ApplyResult struct {
	Stack   string
	Create  int
	Update  int
	Replace int
	Delete  int
	Same    int
	// UpdateVersion is the stack history version this up produced. DIY
	// (file://, object store) backends do not number their updates and
	// leave it 0; UpdateStarted, the update's start time as `pulumi stack
	// history` shows it, names the update on every backend.
	UpdateVersion int
	UpdateStarted string `json:",omitempty"`
	// Recovered names what an attempt that died mid-update had left on
	// the stack and this one cleared before up (its lock, pending
	// operations); empty normally.
	Recovered []string `json:",omitempty"`
}

// VerifyInput runs a stack's checks once.
type VerifyInput struct {
	RunID  string
	Stack  config.Stack
	Commit string
	Undone []string // as in StackInput: checks run in the effective tree
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Check  string
	Passed bool
	Detail string
}

// VerifyResult is one round of a stack's checks.
type VerifyResult struct {
	Stack   string
	Passed  bool
	Results []CheckResult
}

// PollInput asks for the first-parent commits after LastSeen.
type PollInput struct {
	Repo     string // a repos entry's name; empty for the repo block
	Branch   string
	LastSeen string
}

// PollResult lists new commits, oldest first.
type PollResult struct {
	Head       string
	NewCommits []string
	// Stacks are the stacks each new commit touches (by index), so the
	// watcher can put the runs it starts into their queues in merge order.
	Stacks [][]string
	// Commits describe NewCommits (by index): subject and author, for the
	// runs' summaries in the Temporal UI.
	Commits []Commit `json:",omitempty"`
	// Rewritten is set when LastSeen is no longer on the branch (a force push).
	Rewritten bool
	// PollInterval, Initial and OnRewrite are the configured policies, read
	// on every poll so a configuration change applies without restarting
	// the watcher.
	PollInterval time.Duration
	Initial      string
	OnRewrite    string
}

// RevertInput asks for the revert commit of a failed change.
type RevertInput struct {
	Repo    string
	Branch  string
	Commit  string
	Subject string
	RunID   string
}

// RevertResult is what happened on the branch.
type RevertResult struct {
	Revert    string // the revert commit on the branch (pushed now or found)
	Reused    bool
	NoChange  bool     // the branch no longer holds the change
	Conflicts []string // paths that could not be reverted; nothing pushed
}

// LastGoodInput asks for a stack's last successfully deployed commit.
type LastGoodInput struct {
	Stack string
}

// LastGoodResult is that commit, when there is one.
type LastGoodResult struct {
	Commit string
	RunID  string
	Found  bool
}

// EffectiveInput asks what a commit deploys when its turn comes.
type EffectiveInput struct {
	Repo   string
	Branch string
	Commit string
}

// EffectiveResult is the commit's effective tree: its own tree minus the
// changes in Undone, which reverts on the branch have undone since. When
// the subtraction conflicts, DependsOn names the reverted change the commit
// builds on and Conflicts where.
type EffectiveResult struct {
	Undone    []string
	DependsOn string
	Conflicts []string
	Head      string // the branch head the reverts were read from
}
