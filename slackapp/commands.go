package slackapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/slackui"
	"github.com/changeops/changeops/starter"
)

// The slash command (/changeops) gives approvers the emergency stop and
// break glass in Slack: freeze and unfreeze a stack or every stack, and
// vote to override a run's change window. Like a click, every request is
// verified before anything is read from it, answered at once, and its
// outcome goes to the user alone through its response_url; what it
// changed is announced in the channel by the freezes workflow and the
// run's thread.

// Bounds of what a command may carry. Slack's own limit on the text is a
// few KiB; a reason is bounded like a decision's comment (the freezes and
// the run refuse longer ones too).
const (
	maxCommandText = 4000
	maxReason      = 2000
	// maxRunRef bounds a run's reference (change/<repo>/<branch>/<sha>).
	maxRunRef = 512
	// maxEcho bounds the user's input quoted back in a refusal.
	maxEcho = 80
)

const commandUsage = "Usage:\n" +
	"`/changeops freeze STACK|all REASON [until 2h|2026-12-24T18:00]`: stop the stack's applies (runs plan and ask, then wait)\n" +
	"`/changeops unfreeze STACK|all REASON`: lift the freeze; the runs waiting on it apply\n" +
	"`/changeops override RUN REASON`: vote to apply a run waiting for its change window or a freeze now (two approvers must); RUN is change/<branch>/<sha> or a commit SHA prefix\n" +
	"Freezes need an approver of every stack they cover (a stack without approvers: someone in people)."

// command is a parsed slash command.
type command struct {
	verb string // freeze, unfreeze or override
	// stack is the stack to freeze or unfreeze; empty for all.
	stack  string
	run    string
	reason string
	until  time.Time
}

// parseCommand reads the command's text; stacks are the configured
// stacks' names. Its errors name the part that is wrong and what would
// be right.
func parseCommand(text string, now time.Time, stacks []string) (command, error) {
	if len(text) > maxCommandText {
		return command{}, fmt.Errorf("the command is %d bytes; keep it under %d", len(text), maxCommandText)
	}
	if !utf8.ValidString(text) {
		return command{}, errors.New("the command is not valid UTF-8")
	}
	words := strings.Fields(text)
	if len(words) == 0 {
		return command{}, errors.New(commandUsage)
	}
	c := command{verb: strings.ToLower(words[0])}
	switch c.verb {
	case "freeze", "unfreeze", "override":
	case "help":
		return command{}, errors.New(commandUsage)
	default:
		return command{}, fmt.Errorf("unknown command %q: use freeze, unfreeze or override\n%s", echo(words[0]), commandUsage)
	}
	if len(words) < 2 {
		return command{}, fmt.Errorf("%s needs a target and a reason\n%s", c.verb, commandUsage)
	}
	target, rest := words[1], words[2:]
	if c.verb == "freeze" && len(rest) >= 2 && strings.EqualFold(rest[len(rest)-2], "until") {
		t, err := starter.ParseUntil(rest[len(rest)-1], now, time.UTC)
		if err != nil {
			return command{}, fmt.Errorf("%w (times without a zone are UTC)", err)
		}
		if !t.After(now) {
			return command{}, fmt.Errorf("until %s is not in the future", t.UTC().Format(time.RFC3339))
		}
		c.until, rest = t, rest[:len(rest)-2]
	}
	c.reason = strings.Join(rest, " ")
	switch {
	case c.reason == "":
		return command{}, fmt.Errorf("%s needs a reason after %s: it is recorded and announced", c.verb, echo(target))
	case len(c.reason) > maxReason:
		return command{}, fmt.Errorf("the reason is %d bytes; keep it under %d", len(c.reason), maxReason)
	}
	if c.verb == "override" {
		if len(target) > maxRunRef {
			return command{}, fmt.Errorf("run %q is not a run: give its ID (change/<branch>/<sha>) or a commit SHA prefix", echo(target))
		}
		c.run = target
		return c, nil
	}
	if !strings.EqualFold(target, "all") {
		if !slices.Contains(stacks, target) {
			return command{}, fmt.Errorf("stack %q is not in the configuration: name one of %s, or all", echo(target), strings.Join(stacks, ", "))
		}
		c.stack = target
	}
	return c, nil
}

// slackUser says whether a request's user has the shape of a Slack user
// ID: Slack signed the request, but what it names is bounded before it
// reaches a claim or a log.
func slackUser(id string) bool { return len(id) <= 32 && config.IsSlackUser(id) }

// echo is the user's input, bounded, for a refusal.
func echo(s string) string { return slackui.Truncate(s, maxEcho) }

// Commands is the slash command endpoint (POST /slack/commands). Answers:
// 200 acknowledged (the outcome follows through response_url), 401
// unsigned, badly signed or older than five minutes (nothing is done),
// 413 too large, 400 unreadable.
func (a *Approvals) Commands() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := a.readVerified(w, r)
		if !ok {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sc, err := slack.SlashCommandParse(r)
		if err != nil || !slackUser(sc.UserID) {
			http.Error(w, "want a slash command form with a user_id", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		a.DispatchCommand(sc)
	})
}

// DispatchCommand starts what a verified slash command asks for and
// returns at once.
func (a *Approvals) DispatchCommand(sc slack.SlashCommand) {
	if !slackUser(sc.UserID) {
		a.Logger.Warn("slack command without a user ID dropped", "user", echo(sc.UserID))
		return
	}
	a.inBackground(func(ctx context.Context) { a.command(ctx, sc) })
}

func (a *Approvals) command(ctx context.Context, sc slack.SlashCommand) {
	a.reply(ctx, sc.ResponseURL, &slack.WebhookMessage{
		ResponseType: slack.ResponseTypeEphemeral,
		Text:         a.run(ctx, sc.UserID, sc.Text),
	})
}

// run does what a command's text asks for the user and says how it went,
// for the user alone (escaped: it quotes what they typed).
func (a *Approvals) run(ctx context.Context, user, text string) string {
	log := a.Logger.With("user", user)
	c, err := parseCommand(text, time.Now(), a.stackNames())
	var done string
	if err == nil {
		log = log.With("verb", c.verb, "stack", c.stack, "run", echo(c.run))
		done, err = a.perform(ctx, user, c)
	}
	if err != nil {
		log.Info("slack command refused", "reason", err.Error())
		return ":warning: " + slackui.Escape(err.Error())
	}
	log.Info("slack command done")
	return ":white_check_mark: " + slackui.Escape(done)
}

func (a *Approvals) perform(ctx context.Context, user string, c command) (string, error) {
	if c.verb == "override" {
		return a.override(ctx, user, c)
	}
	covered := a.Stacks
	if c.stack != "" {
		covered = slices.DeleteFunc(slices.Clone(a.Stacks), func(s config.Stack) bool { return s.Name != c.stack })
	}
	person, via, err := a.mayFreeze(ctx, user, c.verb, covered)
	if err != nil {
		return "", err
	}
	req := starter.FreezeRequest{TaskQueue: a.TaskQueue, Stack: c.stack, Reason: c.reason, Until: c.until,
		Sign: a.vouch(user, person, via, "")}
	if c.verb == "unfreeze" {
		ans, err := starter.Unfreeze(ctx, a.Temporal, req)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, f := range ans.Lifted {
			fmt.Fprintf(&b, "unfrozen %s (was: %s)\n", f.What(), f)
		}
		for _, f := range ans.Still {
			fmt.Fprintf(&b, "still frozen: %s\n", f)
		}
		return strings.TrimSpace(b.String()), nil
	}
	ans, err := starter.Freeze(ctx, a.Temporal, req)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	what := "every stack"
	if c.stack != "" {
		what = "stack " + c.stack
	}
	fmt.Fprintf(&b, "frozen %s: %s\nruns plan and ask as usual, and wait in waiting-for-window before applying", what, c.reason)
	for _, id := range ans.Applying {
		fmt.Fprintf(&b, "\n%s is applying now: a freeze stops no apply already running, it finishes", id)
	}
	return b.String(), nil
}

// mayFreeze is the Slack rule for a freeze or unfreeze: the user is an
// approver of every stack it covers, and a stack without approvers needs
// a people entry. It returns the person and the user group through which
// the user is an approver, for the claim.
func (a *Approvals) mayFreeze(ctx context.Context, user, verb string, stacks []config.Stack) (person, via string, err error) {
	p, linked := a.People.Person(user)
	for _, s := range stacks {
		if len(s.Approvers) == 0 {
			if !linked {
				return "", "", fmt.Errorf("%s may not %s stack %s from Slack: it has no approvers, and no people entry lists your Slack user", user, verb, s.Name)
			}
			continue
		}
		g, ok, err := a.approverOf(ctx, user, s.Approvers, false)
		if err != nil {
			return "", "", err
		}
		if !ok {
			return "", "", fmt.Errorf("%s may not %s stack %s: only its approvers may (%s)", user, verb, s.Name, strings.Join(s.Approvers, ", "))
		}
		if via == "" {
			via = g
		}
	}
	return p.Name, via, nil
}

// override casts the user's vote to apply a run waiting for its window.
func (a *Approvals) override(ctx context.Context, user string, c command) (string, error) {
	id, err := starter.Resolve(ctx, a.Temporal, c.run)
	if err != nil {
		return "", err
	}
	run, err := starter.Status(ctx, a.Temporal, id)
	if err != nil {
		return "", err
	}
	st := run.Status
	switch {
	case st == nil:
		return "", fmt.Errorf("%s cannot be read right now (%s): try again", id, run.Detail)
	case st.State != contract.StateWaitingForWindow || st.Window == nil:
		return "", fmt.Errorf("%s is %s, not waiting for its change window: only a run that waits for one can be overridden", st.Subject(), st.State)
	}
	via, ok, err := a.approverOf(ctx, user, st.Window.Overriders, false)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s may not override the window of %s: the approvers of %s are %s", user, st.Subject(), strings.Join(st.Stacks, ", "), strings.Join(st.Window.Overriders, ", "))
	}
	email := ""
	if st.Approval.FourEyes {
		if email, err = a.Directory.Email(ctx, user); err != nil || email == "" {
			return "", fmt.Errorf("%s needs four eyes, and changeops cannot read your Slack email to compare it with the commit's author (the app needs the users:read.email scope): use changeops approve --override-window instead", st.Subject())
		}
	}
	p, _ := a.People.Person(user)
	res, err := starter.Override(ctx, a.Temporal, id, c.reason, a.vouch(user, p.Name, via, email))
	if err != nil {
		return "", err
	}
	if len(res.Votes) >= res.Needed {
		return fmt.Sprintf("override vote recorded: %d of %d (%s); %s applies now", len(res.Votes), res.Needed, strings.Join(res.Votes, ", "), st.Subject()), nil
	}
	return fmt.Sprintf("override vote recorded: %d of %d (%s); it applies once %d more approver(s) vote", len(res.Votes), res.Needed, strings.Join(res.Votes, ", "), res.Needed-len(res.Votes)), nil
}

// vouch signs claims as the Slack app for a verified Slack user.
func (a *Approvals) vouch(user, person, via, email string) starter.SignFunc {
	return func(c gate.Claim) (gate.Signed, error) {
		c.SlackUser, c.Person, c.Via, c.SlackEmail = user, person, via, email
		return gate.SignSlack(a.DecisionKey, c), nil
	}
}

func (a *Approvals) stackNames() []string {
	names := make([]string, len(a.Stacks))
	for i, s := range a.Stacks {
		names[i] = s.Name
	}
	slices.Sort(names)
	return names
}

// reasonAsked is a click on Unfreeze or Override window: the target it
// names, for which a modal asks the reason.
func reasonAsked(cb slack.InteractionCallback) (slackui.Target, bool) {
	if cb.Type != slack.InteractionTypeBlockActions || !slackUser(cb.User.ID) || cb.TriggerID == "" {
		return slackui.Target{}, false
	}
	for _, act := range cb.ActionCallback.BlockActions {
		if act == nil || (act.ActionID != slackui.ActionUnfreeze && act.ActionID != slackui.ActionOverride) {
			continue
		}
		t, err := slackui.ParseTarget(act.Value)
		return t, err == nil
	}
	return slackui.Target{}, false
}

// reasonGiven is the submission of the reason modal: its target and the
// reason typed.
func reasonGiven(cb slack.InteractionCallback) (t slackui.Target, reason string, ok bool) {
	if cb.Type != slack.InteractionTypeViewSubmission || !slackUser(cb.User.ID) || cb.View.CallbackID != slackui.CallbackReason {
		return t, "", false
	}
	t, err := slackui.ParseTarget(cb.View.PrivateMetadata)
	if err != nil || cb.View.State == nil {
		return t, "", false
	}
	return t, cb.View.State.Values[slackui.ReasonBlock][slackui.ReasonAction].Value, true
}

// askReason opens the modal that asks why (views.open, within the
// trigger's few seconds); the submission does the rest.
func (a *Approvals) askReason(ctx context.Context, cb slack.InteractionCallback, t slackui.Target) {
	t.Channel = cb.Channel.ID
	if _, err := a.Slack.OpenViewContext(ctx, cb.TriggerID, slackui.ReasonModal(t, maxReason)); err != nil {
		a.Logger.Warn("open the reason modal", "user", cb.User.ID, "error", err)
		a.reply(ctx, cb.ResponseURL, &slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral,
			Text: fmt.Sprintf(":warning: cannot ask for the reason here (%s): use /changeops %s %s REASON", slackui.Escape(err.Error()), slackui.Escape(t.Verb), slackui.Escape(echo(t.Target)))})
	}
}

// reasonGiven does what the modal was opened for, checked exactly like
// the slash command with the same words (the target and the reason came
// back from Slack, so they are read as untrusted as typed text), and
// tells the user alone how it went in the channel of the button.
func (a *Approvals) reasonGiven(ctx context.Context, user string, t slackui.Target, reason string) {
	text := a.run(ctx, user, t.Verb+" "+t.Target+" "+reason)
	if t.Channel == "" {
		a.Logger.Warn("a reason modal named no channel to answer in", "user", user, "answer", text)
		return
	}
	if _, err := a.Slack.PostEphemeralContext(ctx, t.Channel, user, slack.MsgOptionText(text, false)); err != nil {
		a.Logger.Warn("answer a reason modal", "user", user, "error", err)
	}
}
