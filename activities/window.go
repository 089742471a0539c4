package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"

	"github.com/changeops/changeops/contract"
)

// Freeze stops the applies of a stack (or of every stack) until it is
// lifted or runs out: runs plan and ask as usual, then wait.
type Freeze struct {
	// Stack is the frozen stack; empty for every stack.
	Stack  string `json:",omitempty"`
	Reason string
	// By is the person who froze it, authenticated by Method (gate's
	// MethodSSH or MethodSlack) and Key (an SSH key's fingerprint).
	By     string
	Method string `json:",omitempty"`
	Key    string `json:",omitempty"`
	At     time.Time
	// Until ends the freeze on its own; zero: until it is lifted.
	Until time.Time `json:",omitzero"`
}

// Holds says whether the freeze stops stack's applies at now.
func (f Freeze) Holds(stack string, now time.Time) bool {
	return (f.Stack == "" || f.Stack == stack) && (f.Until.IsZero() || now.Before(f.Until))
}

// Same says whether g is the same freeze (as read back from elsewhere).
func (f Freeze) Same(g Freeze) bool {
	return f.Stack == g.Stack && f.By == g.By && f.At.Equal(g.At) && f.Reason == g.Reason
}

// What names what is frozen: "stack web" or "every stack".
func (f Freeze) What() string {
	if f.Stack == "" {
		return "every stack"
	}
	return "stack " + f.Stack
}

// String is the freeze for people.
func (f Freeze) String() string {
	s := fmt.Sprintf("%s frozen by %s since %s: %s", f.What(), f.By, f.At.UTC().Format(time.RFC3339), f.Reason)
	if !f.Until.IsZero() {
		s += fmt.Sprintf(" (until %s)", f.Until.UTC().Format(time.RFC3339))
	}
	return s
}

// FreezeEvent is one line of the freezes' record: a freeze, an unfreeze
// (By is who lifted it, Reason why), or a freeze that ran out (expired).
type FreezeEvent struct {
	Action string
	Freeze
}

// Waiter is a run waiting for freezes on its stacks to end.
type Waiter struct {
	RunID  string
	Stacks []string
}

// FreezesState is the freezes workflow's whole state, carried across
// continue-as-new and returned by contract.FreezesQuery.
type FreezesState struct {
	Freezes []Freeze
	// Waiters are woken, oldest first, when a freeze ends.
	Waiters []Waiter `json:",omitempty"`
	// Seq counts the changes so far: a signed freeze or unfreeze names
	// the state it was made on (Digest), so it counts once.
	Seq int
	// Log is the newest events, for status and the audit.
	Log []FreezeEvent `json:",omitempty"`
}

// Digest names the state a signed freeze or unfreeze was made on.
func (s FreezesState) Digest() string { return fmt.Sprintf("freezes@%d", s.Seq) }

// Holding are the freezes that stop any of stacks at now.
func (s FreezesState) Holding(stacks []string, now time.Time) []Freeze {
	var out []Freeze
	for _, f := range s.Freezes {
		if slices.ContainsFunc(stacks, func(st string) bool { return f.Holds(st, now) }) {
			out = append(out, f)
		}
	}
	return out
}

// WindowInput asks whether a run's stacks may apply now.
type WindowInput struct {
	RunID  string
	Stacks []string
}

// WindowResult is the answer, recorded in the run's history so that the
// workflow's choice replays.
type WindowResult struct {
	Allowed bool
	// CheckedAt is when the answer was computed.
	CheckedAt time.Time
	// Opens is when the windows next let every stack apply; zero when no
	// window opens within a year.
	Opens time.Time `json:",omitzero"`
	// Closed names the window rules that close the stacks now.
	Closed []string `json:",omitempty"`
	// Frozen are the freezes that stop the stacks now.
	Frozen []Freeze `json:",omitempty"`
	// Next is the earliest time the answer can change by itself (a
	// window opening, a freeze running out); zero when only a person can
	// change it (a freeze without an end, no window within a year).
	Next time.Time `json:",omitzero"`
}

// Window says whether stacks may apply now: the change windows of the
// configuration, and the freezes held by the freezes workflow. A run
// stopped by a freeze is registered with the freezes workflow before the
// freezes are read again, so a freeze lifted at any moment either shows
// in this answer or wakes the run.
func (a *Activities) Window(ctx context.Context, in WindowInput) (WindowResult, error) {
	now := time.Now()
	w := a.Config.WindowAt(in.Stacks, now)
	res := WindowResult{CheckedAt: now, Opens: w.Opens, Closed: w.Closed}
	st, err := a.freezes(ctx)
	if err != nil {
		return res, err
	}
	frozen := st.Holding(in.Stacks, now)
	if len(frozen) > 0 && in.RunID != "" {
		id := contract.FreezesID(a.Config.Temporal.TaskQueue)
		if err := a.Temporal.SignalWorkflow(ctx, id, "", contract.WaitingSignal, Waiter{RunID: in.RunID, Stacks: in.Stacks}); err != nil {
			return res, fmt.Errorf("register %s with %s to be woken when its freeze ends: %w", in.RunID, id, err)
		}
		if st, err = a.freezes(ctx); err != nil {
			return res, err
		}
		frozen = st.Holding(in.Stacks, now)
	}
	res.Frozen = frozen
	res.Allowed = w.Allowed && len(frozen) == 0
	if res.Allowed {
		return res, nil
	}
	next, known := now, true
	if !w.Allowed {
		known = !w.Opens.IsZero()
		next = later(next, w.Opens)
	}
	for _, f := range frozen {
		known = known && !f.Until.IsZero()
		next = later(next, f.Until)
	}
	if known {
		res.Next = next
	}
	return res, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// freezes reads the freezes workflow's state. A freezes workflow that was
// terminated still answers with its last state, so terminating it lifts
// no freeze; one that does not exist at all is an error (every worker
// starts it), not "no freezes".
func (a *Activities) freezes(ctx context.Context) (FreezesState, error) {
	var st FreezesState
	if a.Temporal == nil {
		return st, nil
	}
	id := contract.FreezesID(a.Config.Temporal.TaskQueue)
	v, err := a.Temporal.QueryWorkflow(ctx, id, "", contract.FreezesQuery)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// Every worker starts it (worker.Start): gone means deleted, and
		// "no freezes" would lift them all.
		return st, fmt.Errorf("the freezes workflow %s does not exist: a worker starts it when it starts; restart one", id)
	}
	if err != nil {
		return st, fmt.Errorf("read the freezes (query %s on %s): %w", contract.FreezesQuery, id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, fmt.Errorf("decode the freezes of %s: %w", id, err)
	}
	return st, nil
}

// PriorFreezesInput names a freezes workflow's run that did not continue
// from another.
type PriorFreezesInput struct {
	WorkflowID string
	RunID      string
}

// PriorFreezes reads the freezes of the newest closed run of the freezes
// workflow, other than in.RunID, that knew them (from visibility, then its
// query, which a closed run still answers); none when no run ever closed.
// A run that never loaded its freezes (cancelled or failed first, or a
// workflow of another type started under this ID) answers nothing and is
// passed over, so starting and ending runs lifts no freeze; when closed
// runs exist and none answers, it fails and the new run waits.
func (a *Activities) PriorFreezes(ctx context.Context, in PriorFreezesInput) (FreezesState, error) {
	var st FreezesState
	if a.Temporal == nil {
		return st, errors.New("read the last freezes: no Temporal client")
	}
	var closed []*workflowpb.WorkflowExecutionInfo
	var token []byte
	query := fmt.Sprintf("WorkflowId = %s AND WorkflowType = %s AND TaskQueue = %s AND ExecutionStatus != 'Running'",
		contract.Quote(in.WorkflowID), contract.Quote(contract.FreezesWorkflowName), contract.Quote(a.Config.Temporal.TaskQueue))
	for page := 0; page < 10; page++ {
		resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 100, NextPageToken: token})
		if err != nil {
			return st, fmt.Errorf("list the closed runs of %s: %w", in.WorkflowID, err)
		}
		for _, e := range resp.GetExecutions() {
			if e.GetExecution().GetRunId() != in.RunID {
				closed = append(closed, e)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if len(closed) == 0 {
		return st, nil
	}
	slices.SortFunc(closed, func(x, y *workflowpb.WorkflowExecutionInfo) int {
		return y.GetCloseTime().AsTime().Compare(x.GetCloseTime().AsTime())
	})
	var errs []error
	for _, e := range closed[:min(len(closed), maxPriorRuns)] {
		activity.RecordHeartbeat(ctx, e.GetExecution().GetRunId())
		v, err := a.Temporal.QueryWorkflow(ctx, in.WorkflowID, e.GetExecution().GetRunId(), contract.FreezesQuery)
		if err == nil {
			if err = v.Get(&st); err == nil {
				return st, nil
			}
		}
		errs = append(errs, fmt.Errorf("run %s: %w", e.GetExecution().GetRunId(), err))
	}
	return st, fmt.Errorf("no closed run of %s answers with its freezes (tried %d, newest first): %w",
		in.WorkflowID, min(len(closed), maxPriorRuns), errors.Join(errs...))
}

// maxPriorRuns bounds the closed runs PriorFreezes asks, newest first.
const maxPriorRuns = 50
