package activities

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optrefresh"
	"go.temporal.io/sdk/temporal"
)

// recoverIfDied clears what the previous attempt left on the stack when it
// died in the middle of an engine operation (see previousDied), and logs
// it; resumed says that attempt had begun updating resources.
func (a *Activities) recoverIfDied(ctx context.Context, stack auto.Stack, in StackInput, what string, progress *heartbeat) (resumed bool, cleared []string, err error) {
	died, resumed := previousDied(ctx)
	if !died {
		return false, nil, nil
	}
	// "Died" means its heartbeats stopped: make sure it is not alive and
	// still holding the stack before taking the stack from it.
	cancel, err := a.awaitDeadLock(ctx, stack, in, progress)
	if err != nil {
		return resumed, nil, err
	}
	if cleared, err = recoverDeadAttempt(ctx, stack, in, cancel); err != nil {
		return resumed, cleared, err
	}
	stackLog(ctx, in).Warn("the previous attempt died during "+what+"; cleared what it left", "cleared", cleared)
	return resumed, cleared, nil
}

// recoverDeadAttempt clears what an engine operation killed in the middle
// leaves on its stack: the update's lock (pulumi cancel) and its pending
// operations (a refresh that drops pending creates: the program then
// creates those resources again, which for a provider whose create is not
// idempotent may leave an orphan behind, so each one is named in the
// result and the log). It runs only when previousDied says the previous
// attempt died, never beside a live one. It returns what it cleared.
func recoverDeadAttempt(ctx context.Context, stack auto.Stack, in StackInput, cancel bool) ([]string, error) {
	var cleared []string
	if cancel {
		if err := stack.Cancel(ctx); err != nil {
			return nil, temporal.NewApplicationError(fmt.Sprintf("release the lock a dead attempt left on stack %s (%s): %s",
				in.Stack.Name, in.Stack.Stack, summarize(err.Error())), ErrPulumiRecovery)
		}
		cleared = append(cleared, "the lock of the interrupted update")
	}
	dep, err := stack.Export(ctx)
	if err != nil {
		return cleared, temporal.NewApplicationError(fmt.Sprintf("read the state of stack %s: %s", in.Stack.Name, summarize(err.Error())), ErrPulumiRecovery)
	}
	pending, err := pendingOperations(dep.Deployment)
	if err != nil {
		return cleared, fmt.Errorf("read the pending operations of stack %s: %w", in.Stack.Name, err)
	}
	if len(pending) == 0 {
		return cleared, nil
	}
	if _, err := stack.Refresh(ctx, optrefresh.ClearPendingCreates(), optrefresh.Color("never")); err != nil {
		return cleared, temporal.NewApplicationError(fmt.Sprintf("clear the pending operations %v of stack %s: %s",
			pending, in.Stack.Name, summarize(err.Error())), ErrPulumiRecovery)
	}
	for _, p := range pending {
		cleared = append(cleared, "pending "+p)
	}
	return cleared, nil
}

// pendingOperations lists a deployment's pending operations as "type urn".
func pendingOperations(deployment json.RawMessage) ([]string, error) {
	var d struct {
		PendingOperations []struct {
			Type     string `json:"type"`
			Resource struct {
				URN string `json:"urn"`
			} `json:"resource"`
		} `json:"pending_operations"`
	}
	if len(deployment) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(deployment, &d); err != nil {
		return nil, err
	}
	var out []string
	for _, op := range d.PendingOperations {
		out = append(out, op.Type+" "+op.Resource.URN)
	}
	return out, nil
}
