package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/ssh"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/workflows"
)

// FreezeRequest is a freeze or unfreeze as a person asks for it: on the
// command line, signed with the SSH key of their people entry, or in
// Slack, vouched for by the Slack app.
type FreezeRequest struct {
	// TaskQueue names the deployment whose freezes these are.
	TaskQueue string
	// Stack is the stack; empty for every stack (--all).
	Stack  string
	Reason string
	// Until ends a freeze by itself; zero: until unfrozen.
	Until time.Time
	// Sign signs the claim for the person asking (SignSSH, or the Slack
	// app's signature of a verified Slack user).
	Sign SignFunc
}

// SignFunc completes a claim with who signs it and signs it.
type SignFunc func(gate.Claim) (gate.Signed, error)

// SignSSH signs claims as person, with one of their people entry's keys.
func SignSSH(signer ssh.Signer, person string) SignFunc {
	return func(c gate.Claim) (gate.Signed, error) {
		c.Person = person
		return gate.SignSSH(signer, c)
	}
}

// ParseUntil reads when a freeze ends: a duration from now (2h) or a time
// (RFC 3339, or 2006-01-02T15:04 and 2006-01-02 in loc).
func ParseUntil(s string, now time.Time, loc *time.Location) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("until %q: give a duration like 2h or a time like 2025-12-24T18:00", s)
}

// FreezeAnswer is what a freeze or unfreeze did.
type FreezeAnswer struct {
	workflows.FreezeResult
	// Applying are the runs applying the frozen stacks right now: a
	// freeze stops runs before their apply begins, so these finish.
	Applying []string `json:",omitempty"`
}

// Freezes reads the freezes of a deployment (its task queue); none when
// nobody ever froze anything.
func Freezes(ctx context.Context, c client.Client, taskQueue string) (activities.FreezesState, error) {
	var st activities.FreezesState
	id := contract.FreezesID(taskQueue)
	v, err := c.QueryWorkflow(ctx, id, "", contract.FreezesQuery)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read the freezes (%s): %w", id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, fmt.Errorf("decode the freezes of %s: %w", id, err)
	}
	return st, nil
}

// EnsureFreezes starts the deployment's freezes workflow unless it runs:
// every worker does at start, so a run's window check can tell "nobody
// froze anything" (it answers with no freezes) from "the freezes were
// deleted" (it does not exist), and refuse to apply on the second.
func EnsureFreezes(ctx context.Context, c client.Client, taskQueue string) error {
	id := contract.FreezesID(taskQueue)
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            "Freezes of task queue " + taskQueue,
	}, contract.FreezesWorkflowName, activities.FreezesState{})
	if err != nil {
		return fmt.Errorf("start the freezes workflow %s: %w", id, err)
	}
	return nil
}

// Freeze stops the applies of a stack (or every stack): runs plan and ask
// as usual, and wait in waiting-for-window before applying.
func Freeze(ctx context.Context, c client.Client, req FreezeRequest) (FreezeAnswer, error) {
	ans, err := changeFreezes(ctx, c, req, gate.ActionFreeze, contract.FreezeUpdate)
	if err != nil {
		return ans, err
	}
	f := Filter{State: contract.StateApplying, Stack: req.Stack, Limit: 100}
	runs, err := List(ctx, c, f)
	if err != nil {
		return ans, nil // the freeze holds; only the note is missing
	}
	for _, r := range runs {
		ans.Applying = append(ans.Applying, r.ID)
	}
	return ans, nil
}

// Unfreeze lifts the freezes of a stack (every freeze, for Stack ""), and
// the runs waiting on them check their windows at once.
func Unfreeze(ctx context.Context, c client.Client, req FreezeRequest) (FreezeAnswer, error) {
	return changeFreezes(ctx, c, req, gate.ActionUnfreeze, contract.UnfreezeUpdate)
}

// changeFreezes signs the change for the freezes as they stand and sends
// it, starting the freezes workflow if it does not run. A workflow that
// just started reads its last run's freezes first and refuses changes
// meanwhile: the change is signed and sent again for a while.
func changeFreezes(ctx context.Context, c client.Client, req FreezeRequest, action, update string) (FreezeAnswer, error) {
	if req.TaskQueue == "" {
		return FreezeAnswer{}, errors.New("no task queue: pass --config (temporal.task_queue)")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := changeFreezesOnce(ctx, c, req, action, update)
		// A freezes workflow that just started (a worker's first start,
		// after a termination) answers neither its query nor an Update
		// until it has read the last run's freezes: wait for it a while.
		if err != nil && (strings.Contains(err.Error(), "is starting and reads the freezes") ||
			strings.Contains(err.Error(), "the freezes are not loaded yet")) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return FreezeAnswer{}, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		return FreezeAnswer{FreezeResult: res}, err
	}
}

func changeFreezesOnce(ctx context.Context, c client.Client, req FreezeRequest, action, update string) (workflows.FreezeResult, error) {
	var res workflows.FreezeResult
	id := contract.FreezesID(req.TaskQueue)
	st, err := Freezes(ctx, c, req.TaskQueue)
	if err != nil {
		return res, err
	}
	signed, err := req.Sign(gate.Claim{
		WorkflowID: id, Comment: req.Reason, Plan: st.Digest(), IssuedAt: time.Now(),
		Action: action, Stack: req.Stack, Until: req.Until,
	})
	if err != nil {
		return res, err
	}
	op := c.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                req.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            "Freezes of task queue " + req.TaskQueue,
	}, contract.FreezesWorkflowName, activities.FreezesState{})
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: op,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName:   update,
			Args:         []any{workflows.FreezeRequest{Signed: &signed}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		return res, refusal(id, err)
	}
	return res, nil
}

// Override is one person's vote to apply a run waiting for its change
// window now (break glass): it applies once two different approvers
// voted, and the reason is recorded and announced. sign completes the
// claim with who votes (SignSSH, or the Slack app for a Slack user).
func Override(ctx context.Context, c client.Client, id, reason string, sign SignFunc) (workflows.OverrideResult, error) {
	run, err := Status(ctx, c, id)
	if err != nil {
		return workflows.OverrideResult{}, err
	}
	st := run.Status
	if st == nil {
		return workflows.OverrideResult{}, fmt.Errorf("override %s: %s", id, run.Detail)
	}
	if st.State != contract.StateWaitingForWindow {
		return workflows.OverrideResult{}, fmt.Errorf("refused: %s is %s, not waiting for its change window: only a run that waits for one can be overridden (approve it first, without --override-window)", st.Subject(), st.State)
	}
	signed, err := sign(gate.Claim{
		WorkflowID: st.ID, RunID: st.RunID, Approve: true, Comment: reason,
		Plan: st.PlanDigest(), IssuedAt: time.Now(), Action: gate.ActionOverride,
	})
	if err != nil {
		return workflows.OverrideResult{}, err
	}
	return update[workflows.OverrideResult](ctx, c, id, contract.OverrideWindowUpdate, workflows.DecisionRequest{Signed: &signed})
}

// Frozen is a freeze in force as `list --json` prints it: one line each,
// before the runs, with kind "freeze" so scripts reading runs can tell
// them apart.
type Frozen struct {
	Kind string `json:"kind"`
	// Stacks holds the frozen stack, or "*" for every stack.
	Stacks []string `json:"stacks"`
	Reason string   `json:"reason"`
	// By is who froze it, authenticated by Method (ssh or slack).
	By     string    `json:"by"`
	Method string    `json:"method,omitempty"`
	At     time.Time `json:"at"`
	// Until is when it ends by itself; null: when someone unfreezes it.
	Until time.Time `json:"until"`
}

// InForce are the freezes of st that hold at now (one that ran out is
// dropped by the freezes workflow at its next turn).
func InForce(st activities.FreezesState, now time.Time) []activities.Freeze {
	var out []activities.Freeze
	for _, f := range st.Freezes {
		if f.Until.IsZero() || now.Before(f.Until) {
			out = append(out, f)
		}
	}
	return out
}

// Freeze is the freeze f shows.
func (f Frozen) Freeze() activities.Freeze {
	stack := ""
	if len(f.Stacks) > 0 && f.Stacks[0] != "*" {
		stack = f.Stacks[0]
	}
	return activities.Freeze{Stack: stack, Reason: f.Reason, By: f.By, Method: f.Method, At: f.At, Until: f.Until}
}

// FrozenLine is f as `list --json` and `status --json` print it.
func FrozenLine(f activities.Freeze) Frozen {
	stack := f.Stack
	if stack == "" {
		stack = "*"
	}
	return Frozen{Kind: KindFreeze, Stacks: []string{stack}, Reason: f.Reason, By: f.By, Method: f.Method, At: f.At, Until: f.Until}
}

// Holding sets run.Frozen to the freezes in force on its stacks, for a
// run that has not begun to apply: a frozen stack plans and asks as
// usual, so a run awaiting approval is held only once approved, and its
// status says so beforehand.
func Holding(ctx context.Context, c client.Client, taskQueue string, run *Run) error {
	switch run.State {
	case contract.StatePlanning, contract.StateQueued, contract.StateAwaitingApproval, contract.StateWaitingForWindow:
	default:
		return nil
	}
	st, err := Freezes(ctx, c, taskQueue)
	if err != nil {
		return err
	}
	for _, f := range st.Holding(run.Stacks, time.Now()) {
		run.Frozen = append(run.Frozen, FrozenLine(f))
	}
	return nil
}
