package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/notify"
)

// FreezeRequest freezes or unfreezes (contract.FreezeUpdate, contract.UnfreezeUpdate): a
// gate.Claim with ActionFreeze or ActionUnfreeze, signed by the person.
type FreezeRequest struct {
	Signed *gate.Signed `json:",omitempty"`
}

// FreezeResult answers an accepted freeze or unfreeze.
type FreezeResult struct {
	State activities.FreezesState
	// Lifted are the freezes an unfreeze ended; Still those that still
	// hold the stack it named (the freeze of every stack).
	Lifted []activities.Freeze `json:",omitempty"`
	Still  []activities.Freeze `json:",omitempty"`
}

const (
	// freezesHistoryLimit continues the freezes workflow as new before
	// its history grows long; its whole state is FreezesState.
	freezesHistoryLimit = 2000
	// maxFreezeLog bounds the events the freezes keep for the audit.
	maxFreezeLog = 200
	// maxWaiters bounds the runs registered to be woken (the oldest go:
	// they still check again on their own every windowRecheckEvery).
	maxWaiters = 1000
	// maxWaiterID bounds a waiting run's ID (change/<branch>/<sha>).
	maxWaiterID = 512
)

// Freezes is the deployment's emergency stop: one long-lived workflow
// (contract.FreezesID of the task queue, started by the first freeze) that holds
// every freeze, takes signed freezes and unfreezes as validated Updates,
// answers contract.FreezesQuery for the Window activity, the CLI and the audit,
// and wakes the runs waiting on a freeze, in the order they registered,
// when one ends. Freezing stops no apply already running: a run checks
// its window before its apply begins, so an up in flight finishes.
//
// A run started any other way than by its own continue-as-new (the first
// run, or one started after someone terminated the last) ignores its
// input and reads the last run's freezes back, so terminating the
// workflow and starting it empty lifts no freeze.
func (w Workflows) Freezes(ctx workflow.Context, in activities.FreezesState) error {
	f := &freezeBoard{gate: w.Gate}
	if workflow.GetInfo(ctx).ContinuedExecutionRunID != "" {
		f.st, f.loaded = in, true
	}
	if err := f.setup(ctx); err != nil {
		return err
	}
	// Freezes, unfreezes and expiries are announced (Slack, the log) by a
	// coroutine of their own, so a slow Slack never delays waking the
	// runs a freeze held.
	if workflow.GetVersion(ctx, VersionAnnounceFreezes, workflow.DefaultVersion, 1) == 1 {
		f.announce = true
		workflow.Go(ctx, f.announcer)
	}
	if !f.loaded {
		if err := f.load(ctx); err != nil {
			return err
		}
	}
	waiting := workflow.GetSignalChannel(ctx, contract.WaitingSignal)
	for {
		f.takeWaiters(waiting)
		f.expire(ctx)
		if f.wake {
			f.wakeWaiters(ctx)
		}
		workflow.SetCurrentDetails(ctx, f.describe())
		if now := workflow.GetInfo(ctx); now.GetCurrentHistoryLength() > freezesHistoryLimit || now.GetContinueAsNewSuggested() {
			break
		}
		seq := f.st.Seq
		cond := func() bool { return waiting.Len() > 0 || f.wake || f.st.Seq != seq }
		next := f.nextExpiry()
		var err error
		if next.IsZero() {
			err = workflow.Await(ctx, cond)
		} else {
			_, err = workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
				Timeout:      max(next.Sub(workflow.Now(ctx)), time.Second),
				TimerOptions: workflow.TimerOptions{Summary: "end of a freeze"},
			}, cond)
		}
		if err != nil {
			return temporal.NewCanceledError("freezes cancelled")
		}
	}
	for {
		// The announcements still due go out before the run continues as
		// new: they are not part of the state it carries over.
		if err := workflow.Await(ctx, func() bool {
			return workflow.AllHandlersFinished(ctx) && len(f.unannounced) == 0 && !f.announcing
		}); err != nil {
			return err
		}
		if !f.wake {
			break
		}
		f.wakeWaiters(ctx) // an unfreeze answered while the handlers finished
	}
	f.takeWaiters(waiting)
	return workflow.NewContinueAsNewError(ctx, contract.FreezesWorkflowName, f.st)
}

type freezeBoard struct {
	gate Verifier
	st   activities.FreezesState
	// loaded is set once the state is known (carried over, or read back
	// from the last run); until then every change is refused.
	loaded bool
	// wake asks the loop to wake the waiting runs: a freeze ended.
	wake bool
	// announce: events are announced (VersionAnnounceFreezes), from
	// unannounced, by the announcer; announcing while it delivers one.
	announce    bool
	unannounced []activities.FreezeEvent
	announcing  bool
}

func (f *freezeBoard) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, contract.FreezesQuery, func() (activities.FreezesState, error) {
		// Until the state is read back, "no freezes" would be a lie that
		// lifts every freeze: a run cancelled or failed before loading
		// answers nothing, and readers move on to an older run.
		if !f.loaded {
			return f.st, errors.New("the freezes are not loaded yet")
		}
		return f.st, nil
	}); err != nil {
		return err
	}
	for _, action := range []string{gate.ActionFreeze, gate.ActionUnfreeze} {
		name, handle := contract.FreezeUpdate, f.freeze
		if action == gate.ActionUnfreeze {
			name, handle = contract.UnfreezeUpdate, f.unfreeze
		}
		if err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context, req FreezeRequest) (FreezeResult, error) { return handle(ctx, req), nil },
			workflow.UpdateHandlerOptions{Validator: func(req FreezeRequest) error {
				return f.authorize(ctx, action, req)
			}},
		); err != nil {
			return err
		}
	}
	return nil
}

// load reads the freezes of the workflow's last run that knew them (none
// for the first run ever). It retries until it can: starting with none
// would lift every freeze, so a run that cannot read them (or is
// cancelled first) ends without ever answering, and the applies it would
// have allowed keep waiting.
func (f *freezeBoard) load(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	var prior activities.FreezesState
	err := workflow.ExecuteActivity(withOptions(ctx, workflow.ActivityOptions{
		Summary:             "Read the freezes of the last run",
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumInterval: time.Minute},
	}), a.PriorFreezes, activities.PriorFreezesInput{WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID}).Get(ctx, &prior)
	if err != nil {
		return fmt.Errorf("read the freezes of the last run: %w", err)
	}
	f.st, f.loaded = prior, true
	f.wake = len(prior.Waiters) > 0
	return nil
}

// authorize is the rule for a freeze and an unfreeze: signed by a person
// the gate knows, for this workflow and the freezes as they stand (so a
// signed claim counts once), with a reason. Anyone in people may freeze
// and unfreeze; nobody with only Temporal access can, and every change
// names its person in the record. Validators are not replayed.
func (f *freezeBoard) authorize(ctx workflow.Context, action string, req FreezeRequest) error {
	now := workflow.Now(ctx)
	if !f.loaded {
		return errors.New("the freezes workflow is starting and reads the freezes of its last run: try again in a few seconds")
	}
	s := req.Signed
	if s == nil {
		return fmt.Errorf("the %s is not signed: use changeops %s with your SSH key; access to Temporal alone cannot freeze or unfreeze", action, action)
	}
	if f.gate == nil {
		return errors.New("this worker cannot authenticate freezes")
	}
	id, err := f.gate.Verify(*s, now)
	if err != nil {
		return err
	}
	c := s.Claim
	switch {
	case c.Action != action:
		return fmt.Errorf("the claim is not %s (it is %q)", anAction(action), c.Action)
	case c.WorkflowID != workflow.GetInfo(ctx).WorkflowExecution.ID:
		return fmt.Errorf("the %s was signed for %s, not %s", action, c.WorkflowID, workflow.GetInfo(ctx).WorkflowExecution.ID)
	case c.Plan != f.st.Digest():
		return fmt.Errorf("the freezes changed since the %s was signed (%s, now %s): run it again", action, c.Plan, f.st.Digest())
	case strings.TrimSpace(c.Comment) == "":
		return fmt.Errorf("%s needs a reason: --reason TEXT (it is recorded and shown)", anAction(action))
	case len(c.Comment) > maxComment:
		return fmt.Errorf("the reason is %d bytes; keep it under %d", len(c.Comment), maxComment)
	case id.Person == "" && id.SlackUser == "":
		return fmt.Errorf("the %s names nobody", action)
	case strings.ContainsAny(c.Stack, "/ \t'\"\\*?[") || len(c.Stack) > 200:
		return fmt.Errorf("%q is not a stack name", c.Stack)
	}
	if action == gate.ActionFreeze {
		if !c.Until.IsZero() && !c.Until.After(now) {
			return fmt.Errorf("--until %s is not in the future", c.Until.UTC().Format(time.RFC3339))
		}
		return nil
	}
	if lifted, still := f.lifts(c.Stack, now); len(lifted) == 0 {
		if len(still) > 0 {
			return fmt.Errorf("stack %s is frozen only by the freeze of every stack (%s): changeops unfreeze --all", c.Stack, still[0])
		}
		if c.Stack == "" {
			return errors.New("nothing is frozen")
		}
		return fmt.Errorf("stack %s is not frozen", c.Stack)
	}
	return nil
}

// lifts are the freezes an unfreeze of stack (every one for "") ends, and
// those that still hold the stack afterwards.
func (f *freezeBoard) lifts(stack string, now time.Time) (lifted, still []activities.Freeze) {
	for _, fr := range f.st.Freezes {
		switch {
		case !fr.Until.IsZero() && !now.Before(fr.Until):
		case stack == "" || fr.Stack == stack:
			lifted = append(lifted, fr)
		case fr.Stack == "":
			still = append(still, fr)
		}
	}
	return lifted, still
}

func (f *freezeBoard) freeze(ctx workflow.Context, req FreezeRequest) FreezeResult {
	c, s := req.Signed.Claim, req.Signed
	fr := activities.Freeze{Stack: c.Stack, Reason: c.Comment, By: c.Who(), Method: s.Method, Key: s.Fingerprint,
		At: workflow.Now(ctx), Until: c.Until}
	f.st.Freezes = append(f.st.Freezes, fr)
	f.st.Seq++
	f.log(activities.FreezeEvent{Action: gate.ActionFreeze, Freeze: fr})
	workflow.GetLogger(ctx).Info("frozen", "stack", fr.What(), "by", fr.By, "reason", fr.Reason)
	return FreezeResult{State: f.st}
}

func (f *freezeBoard) unfreeze(ctx workflow.Context, req FreezeRequest) FreezeResult {
	c, s := req.Signed.Claim, req.Signed
	now := workflow.Now(ctx)
	lifted, still := f.lifts(c.Stack, now)
	f.st.Freezes = slices.DeleteFunc(f.st.Freezes, func(fr activities.Freeze) bool {
		return c.Stack == "" || fr.Stack == c.Stack
	})
	f.st.Seq++
	for _, fr := range lifted {
		f.log(activities.FreezeEvent{Action: gate.ActionUnfreeze, Freeze: activities.Freeze{
			Stack: fr.Stack, Reason: c.Comment, By: c.Who(), Method: s.Method, Key: s.Fingerprint, At: now}})
	}
	f.wake = true
	workflow.GetLogger(ctx).Info("unfrozen", "stack", c.Stack, "by", c.Who(), "reason", c.Comment, "lifted", len(lifted))
	return FreezeResult{State: f.st, Lifted: lifted, Still: still}
}

// expire drops the freezes whose time is up.
func (f *freezeBoard) expire(ctx workflow.Context) {
	now := workflow.Now(ctx)
	f.st.Freezes = slices.DeleteFunc(f.st.Freezes, func(fr activities.Freeze) bool {
		if fr.Until.IsZero() || now.Before(fr.Until) {
			return false
		}
		f.log(activities.FreezeEvent{Action: "expired", Freeze: fr})
		f.wake = true
		return true
	})
}

func (f *freezeBoard) nextExpiry() time.Time {
	var next time.Time
	for _, fr := range f.st.Freezes {
		if !fr.Until.IsZero() && (next.IsZero() || fr.Until.Before(next)) {
			next = fr.Until
		}
	}
	return next
}

func (f *freezeBoard) log(e activities.FreezeEvent) {
	f.st.Log = append(f.st.Log, e)
	if n := len(f.st.Log); n > maxFreezeLog {
		f.st.Log = f.st.Log[n-maxFreezeLog:]
	}
	if f.announce {
		f.unannounced = append(f.unannounced, e)
	}
}

// announcer delivers the freezes' events in order, each a message of its
// own in the channel; one that cannot be delivered is logged and dropped
// (deliver), never retried forever.
func (f *freezeBoard) announcer(ctx workflow.Context) {
	for {
		if err := workflow.Await(ctx, func() bool { return len(f.unannounced) > 0 }); err != nil {
			return
		}
		e := f.unannounced[0]
		f.unannounced = f.unannounced[1:]
		f.announcing = true
		deliver(ctx, freezeEvent(workflow.GetInfo(ctx).WorkflowExecution.ID, e))
		f.announcing = false
	}
}

// freezeEvent is the announcement of a freeze, an unfreeze or an expiry.
// Its texts come from signed claims, whose strings are bounded by the
// validator; the renderer escapes them.
func freezeEvent(id string, e activities.FreezeEvent) notify.Event {
	ev := notify.Event{Kind: notify.KindFreeze, RunID: id, State: e.Action, Detail: e.Reason}
	if e.Stack != "" {
		ev.Stacks = []string{e.Stack}
	}
	switch e.Action {
	case gate.ActionFreeze:
		ev.Step = fmt.Sprintf("%s frozen by %s", e.What(), e.By)
		if !e.Until.IsZero() {
			ev.Step += " until " + e.Until.UTC().Format(time.RFC3339)
		}
		ev.Detail += "\nRuns plan and ask as usual, then wait in waiting-for-window; an apply already running finishes."
	case gate.ActionUnfreeze:
		ev.Step = fmt.Sprintf("%s unfrozen by %s", e.What(), e.By)
		ev.Detail += "\nThe runs waiting on it check their windows now."
	default:
		ev.Step = fmt.Sprintf("freeze of %s ran out", e.What())
		ev.Detail = "frozen by " + e.By + ": " + e.Reason
	}
	return ev
}

// takeWaiters registers the runs that asked to be woken, in the order
// they asked; a run registered again keeps its place.
func (f *freezeBoard) takeWaiters(ch workflow.ReceiveChannel) {
	for {
		var w activities.Waiter
		if !ch.ReceiveAsync(&w) {
			break
		}
		// Anyone with Temporal access can send this signal: only a run's
		// ID of bounded length is kept, and only a run is ever signalled.
		w.Stacks = nil
		if len(w.RunID) > maxWaiterID || !strings.HasPrefix(w.RunID, "change/") && !strings.HasPrefix(w.RunID, "drift/") {
			continue
		}
		if !slices.ContainsFunc(f.st.Waiters, func(o activities.Waiter) bool { return o.RunID == w.RunID }) {
			f.st.Waiters = append(f.st.Waiters, w)
		}
	}
	if n := len(f.st.Waiters); n > maxWaiters {
		f.st.Waiters = f.st.Waiters[n-maxWaiters:]
	}
}

// wakeWaiters tells every registered run to check its window again,
// oldest first: the signals are sent in that order, together. Runs of
// one stack apply in merge order whatever order the signals arrive in,
// since the stack's queue grants it to one at a time. A run still frozen
// registers again when it checks.
func (f *freezeBoard) wakeWaiters(ctx workflow.Context) {
	waiters := f.st.Waiters
	f.st.Waiters, f.wake = nil, false
	sent := make([]workflow.Future, len(waiters))
	for i, w := range waiters {
		sent[i] = workflow.SignalExternalWorkflow(ctx, w.RunID, "", contract.WindowRecheckSignal, WindowRecheck{Reason: "a freeze ended"})
	}
	for i, s := range sent {
		if err := s.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Info("waiting run not woken (it ended?)", "run", waiters[i].RunID, "error", err)
		}
	}
}

func (f *freezeBoard) describe() string {
	if len(f.st.Freezes) == 0 {
		return "No freezes"
	}
	parts := make([]string, len(f.st.Freezes))
	for i, fr := range f.st.Freezes {
		parts[i] = fr.String()
	}
	return "Frozen: " + strings.Join(parts, "; ")
}

// anAction is "a freeze" or "an unfreeze".
func anAction(action string) string {
	if action == gate.ActionUnfreeze {
		return "an unfreeze"
	}
	return "a " + action
}
