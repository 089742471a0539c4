package starter

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/workflows"
)

// DriftRequest asks for a drift check of a stack now.
type DriftRequest struct {
	Stack string
	// By is who asks, recorded in the run.
	By string
	// Policy overrides the stack's drift policy for this check (heal to
	// re-apply git now); empty keeps it.
	Policy string
}

// Drift starts a drift check of a stack now, beside its schedule (which
// runs on even when drift_interval is 0 and there is none). It returns
// the run's workflow ID.
func Drift(ctx context.Context, c client.Client, cfg *config.Config, req DriftRequest) (string, error) {
	s, ok := cfg.StackByName(req.Stack)
	if !ok {
		return "", fmt.Errorf("stack %q is not in the configuration: name one of %s", req.Stack, strings.Join(cfg.StackNames(), ", "))
	}
	switch req.Policy {
	case "", config.DriftNotify, config.DriftHeal:
	case config.DriftApprove:
		if len(s.Approvers) == 0 {
			return "", fmt.Errorf("stack %s has no approvers to ask: list stacks[].approvers, or use --heal", s.Name)
		}
	default:
		return "", fmt.Errorf("drift policy %q: use notify, approve or heal", req.Policy)
	}
	id := contract.DriftID(s.Name, time.Now())
	summary := "Drift check of stack " + s.Name
	if req.By != "" {
		summary += " (asked by " + req.By + ")"
	}
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// Never hand back another check's run as if it were this one.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            summary,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.ChangeStacks.ValueSet([]string{s.Name}),
			contract.ChangeState.ValueSet(contract.StateDriftChecking),
		),
	}, contract.DriftWorkflowName, workflows.DriftInput{Stack: s.Name, UIURL: cfg.Temporal.UIURL, Policy: req.Policy, By: req.By})
	if err != nil {
		return "", fmt.Errorf("start drift check %s: %w", id, err)
	}
	return id, nil
}

// DriftSettled says whether a drift run has reached a state that waits
// for nobody but a person or the clock: its outcome, a request for a
// decision, or a heal waiting for its change window.
func DriftSettled(r Run) bool {
	switch r.State {
	case contract.StateDriftNone, contract.StateDriftFound, contract.StateDriftHealed, contract.StateDriftAccepted,
		contract.StateAwaitingApproval, contract.StateWaitingForWindow, contract.StateNoOp, contract.StateFailed:
		return r.Status != nil
	}
	return false
}
