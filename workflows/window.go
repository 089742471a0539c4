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
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/notify"
)

// Change windows and freezes (docs/windows.md): only
// the apply waits. A run plans and asks at any time; once approved, and
// before each apply, it asks the Window activity whether its stacks may
// apply now. Computing with time zones, cron and the freezes in an
// activity keeps this code deterministic, and the answer is in the
// history. If not, the run waits in waiting-for-window, holding its
// queues (so the runs behind it keep merge order), on a durable timer
// until the window opens, then checks again and applies, and the apply
// compares a fresh preview with the approved plan as always.

// windowRecheckEvery bounds one wait: the run checks again at least this
// often. A window's opening is known in advance, but the configuration
// may change meanwhile (a rule removed, a freeze moved), and a freeze
// lifted wakes the run by a signal from the freezes workflow, which can
// be lost (the freezes workflow terminated, a registration that raced a
// continue-as-new). The fallback costs a short activity and a timer per
// half hour of waiting, which keeps a month-long freeze's history small.
const windowRecheckEvery = 30 * time.Minute

// overrideVotes is how many distinct people must vote to apply a run
// outside its window or inside a freeze.
const overrideVotes = 2

// WindowStatus is what a run knows about its change window.
type WindowStatus struct {
	// Check is the last answer of the Window activity.
	Check activities.WindowResult
	// Since is when the run began waiting; zero when it never waited.
	Since time.Time `json:",omitzero"`
	// Overriders may vote to override: the approvers of every stack of
	// the run that has approvers.
	Overriders []string `json:",omitempty"`
	// Overrides are the votes for the plan shown (Plan); a new plan
	// starts over.
	Overrides []Decision `json:",omitempty"`
	Plan      string     `json:",omitempty"`
	// Overridden is set once the run applied on overriding votes.
	Overridden bool `json:",omitempty"`
}

// OverrideResult answers an accepted override vote.
type OverrideResult struct {
	State string
	// Votes and Needed: the run applies when Votes reaches Needed.
	Votes  []string
	Needed int
}

// WindowRecheck wakes a run waiting for its window (contract.WindowRecheckSignal).
type WindowRecheck struct {
	Reason string `json:",omitempty"`
}

// awaitWindow holds the approved run until its stacks may apply: their
// windows open and no freeze stops them, or two people override. ok is
// false when the run ends here. Runs from before windows existed keep
// their recorded shape.
func (r *run) awaitWindow(ctx workflow.Context) (ChangeResult, bool) {
	if workflow.GetVersion(ctx, VersionChangeWindows, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ChangeResult{}, true
	}
	if r.st.Window == nil {
		r.st.Window = &WindowStatus{Overriders: overridersOf(r.stacks)}
		if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.OverrideWindowUpdate,
			func(ctx workflow.Context, req DecisionRequest) (OverrideResult, error) {
				return r.recordOverride(ctx, req), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(req DecisionRequest) error {
				return authorizeOverride(&r.st, r.gate, req, workflow.Now(ctx))
			}},
		); err != nil {
			return r.finish(ctx, contract.StateFailed, "set up the window override: "+err.Error()), false
		}
	}
	ws := r.st.Window
	if plan := r.st.PlanDigest(); ws.Plan != plan {
		ws.Plan, ws.Overrides, ws.Overridden = plan, nil, false // votes were for another plan
	}
	if ws.Overridden {
		return ChangeResult{}, true // overridden for this plan: every stack's up
	}
	waited := false
	recheck := workflow.GetSignalChannel(ctx, contract.WindowRecheckSignal)
	names := strings.Join(r.st.Stacks, ", ")
	for {
		if voters := ws.voters(); len(voters) >= overrideVotes {
			ws.Overridden = true
			reasons := make([]string, len(ws.Overrides))
			for i, v := range ws.Overrides {
				reasons[i] = fmt.Sprintf("%s: %s", v.User, v.Comment)
			}
			r.notify(ctx, notify.Event{Kind: notify.KindWindow, Step: "window overridden by " + strings.Join(voters, " and "),
				Detail: "applying outside the change window or freeze (break glass)\n" + strings.Join(reasons, "\n")})
			return ChangeResult{}, true
		}
		for recheck.ReceiveAsync(nil) { // wake-ups for an earlier wait
		}
		var res activities.WindowResult
		err := r.short(ctx, windowOptions("Check the change window of "+names), a.Window,
			activities.WindowInput{RunID: r.st.ID, Stacks: r.st.Stacks}).Get(ctx, &res)
		if err != nil {
			// Unknown is closed: nothing applies on a window or freeze
			// that could not be read.
			return r.fail(ctx, "check the change window of "+names, err), false
		}
		ws.Check = res
		if res.Allowed {
			if waited {
				r.notify(ctx, notify.Event{Kind: notify.KindWindow, Step: "window open",
					Detail: fmt.Sprintf("waited %s; applying", workflow.Now(ctx).Sub(ws.Since).Round(time.Second))})
			}
			return ChangeResult{}, true
		}
		why := windowWhy(res)
		waited = true
		if r.st.State != contract.StateWaitingForWindow {
			ws.Since = workflow.Now(ctx)
			r.enter(ctx, contract.StateWaitingForWindow, why)
			detail := why
			if len(ws.Overriders) > 0 {
				detail += fmt.Sprintf("\nTo apply now (break glass), %d of %s run changeops approve %s --override-window --reason TEXT",
					overrideVotes, strings.Join(ws.Overriders, ", "), r.st.ID)
			}
			r.notify(ctx, notify.Event{Kind: notify.KindWindow, Step: "waiting for window", Detail: detail})
		} else {
			r.detail(ctx, why)
		}
		wait := windowRecheckEvery
		if !res.Next.IsZero() {
			wait = min(wait, max(res.Next.Sub(workflow.Now(ctx)), time.Second))
		}
		votes := len(ws.Overrides)
		if _, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
			Timeout:      wait,
			TimerOptions: workflow.TimerOptions{Summary: "change window of " + names},
		}, func() bool { return recheck.Len() > 0 || len(ws.Overrides) != votes }); err != nil {
			return r.finish(ctx, contract.StateFailed, "cancelled while waiting for the change window"), false
		}
	}
}

// windowWhy says why the run waits and until when, for its status, the
// UI's current details and the message.
func windowWhy(res activities.WindowResult) string {
	var parts []string
	for _, f := range res.Frozen {
		parts = append(parts, f.String())
	}
	parts = append(parts, res.Closed...)
	why := "Waiting: " + strings.Join(parts, "; ")
	switch {
	case len(res.Frozen) > 0 && res.Next.IsZero():
		why += "; applies once unfrozen (changeops unfreeze)"
	case res.Next.IsZero():
		why += "; no window opens within a year"
	case len(res.Frozen) > 0:
		why += "; checks again at " + res.Next.UTC().Format(time.RFC3339)
	default:
		why += "; the window opens at " + res.Next.UTC().Format(time.RFC3339)
	}
	return why
}

// overridersOf are the approvers of every stack that has approvers.
func overridersOf(stacks []config.Stack) []string {
	var out []string
	first := true
	for _, s := range stacks {
		if len(s.Approvers) == 0 {
			continue
		}
		if first {
			out, first = slices.Clone(s.Approvers), false
			continue
		}
		out = slices.DeleteFunc(out, func(u string) bool { return !slices.Contains(s.Approvers, u) })
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// voters are the distinct people who voted to override.
func (ws *WindowStatus) voters() []string {
	var out []string
	for _, v := range ws.Overrides {
		if !slices.Contains(out, v.User) {
			out = append(out, v.User)
		}
	}
	return out
}

// recordOverride keeps a vote the validator accepted, from its claim.
func (r *run) recordOverride(ctx workflow.Context, req DecisionRequest) OverrideResult {
	ws := r.st.Window
	s := req.Signed
	d := Decision{Approve: true, User: s.Claim.Who(), Comment: s.Claim.Comment, At: workflow.Now(ctx), Method: s.Method, Key: s.Fingerprint}
	if s.Method == gate.MethodSlack {
		d.Via = s.Claim.Via
	}
	ws.Overrides = append(ws.Overrides, d)
	voters := ws.voters()
	r.notify(ctx, notify.Event{Kind: notify.KindWindow,
		Step:   fmt.Sprintf("override vote by %s (%d of %d)", d.User, len(voters), overrideVotes),
		Detail: d.Comment})
	return OverrideResult{State: r.st.State, Votes: voters, Needed: overrideVotes}
}

// authorizeOverride is the rule for an override vote, like authorize's
// for a decision: signed as an override of this run and the plan it
// shows, while it waits for its window, with a reason, by an allowed
// person who has not voted yet, and under four eyes by nobody linked to
// the commit's author or committer. Validators are not replayed.
func authorizeOverride(st *Status, g Verifier, req DecisionRequest, now time.Time) error {
	s := req.Signed
	if s == nil {
		return errors.New("the override is not signed: use `changeops approve ID --override-window --reason TEXT` with your SSH key; access to Temporal alone cannot override a window")
	}
	id, err := g.Verify(*s, now)
	if err != nil {
		return err
	}
	c, ws := s.Claim, st.Window
	who := c.Who()
	switch {
	case c.Action != gate.ActionOverride:
		return fmt.Errorf("the claim is not an override of the change window (it is %q): use changeops approve --override-window", c.Action)
	case c.WorkflowID != st.ID || c.RunID != st.RunID:
		return fmt.Errorf("the override was signed for run %s (%s), not this one (%s, %s)", c.WorkflowID, c.RunID, st.ID, st.RunID)
	case st.State != contract.StateWaitingForWindow || ws == nil:
		return fmt.Errorf("%s is %s, not waiting for its change window: only a run that waits for one can be overridden", st.Subject(), st.State)
	case c.Plan != st.PlanDigest():
		return fmt.Errorf("the override is for another plan of %s than the one waiting: look at the new plan and vote again", st.Subject())
	case strings.TrimSpace(c.Comment) == "":
		return errors.New("an override needs a reason: --reason TEXT (it is recorded and announced)")
	case len(c.Comment) > maxComment:
		return fmt.Errorf("the reason is %d bytes; keep it under %d", len(c.Comment), maxComment)
	case len(ws.Overriders) == 0:
		return fmt.Errorf("%s has no approvers, so nobody may override its window: wait for it, or unfreeze", st.Subject())
	case !id.Allowed(ws.Overriders, c.Via):
		return fmt.Errorf("%s may not override the window of %s: the approvers of %s are %s", who, st.Subject(), strings.Join(st.Stacks, ", "), strings.Join(ws.Overriders, ", "))
	case slices.Contains(ws.voters(), who):
		return fmt.Errorf("%s already voted to override %s: it takes %d different people", who, st.Subject(), overrideVotes)
	}
	if st.Approval.FourEyes {
		if id.Method == gate.MethodSlack && c.SlackEmail == "" {
			return fmt.Errorf("%s needs four eyes, and the Slack vote of %s carries no email to compare with the commit's: the Slack app needs the users:read.email scope", st.Subject(), who)
		}
		for _, p := range []struct{ role, name, email string }{
			{"author", st.Commit.AuthorName, st.Commit.AuthorEmail},
			{"committer", st.Commit.CommitterName, st.Commit.CommitterEmail},
		} {
			if link := id.LinkedTo(p.name, p.email); link != "" {
				return fmt.Errorf("%s is linked to the %s of commit %s by %s, and %s four eyes: another approver must vote",
					who, p.role, contract.ShortSHA(st.Commit.SHA), link, stacksRequire(st.Approval.Stacks))
			}
		}
	}
	return nil
}

// windowOptions: a quick computation and a query to the Temporal
// server, retried through a server outage for a while; then the run fails
// rather than apply on a freeze it could not read.
func windowOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		Summary:                summary,
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 2 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	}
}
