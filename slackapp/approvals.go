package slackapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/slackui"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/workflows"
)

// maxInteractionBody bounds an interaction request; Slack's are a few KiB.
const maxInteractionBody = 1 << 20

// decideTimeout bounds the work a click starts after it was acknowledged.
const decideTimeout = 30 * time.Second

// Approvals turns clicks on a run's Approve and Reject buttons into
// decisions. Every click is verified (HTTP: the signing secret; Socket
// Mode: Slack's own connection), then answered at once, because Slack
// waits three seconds only; the decision itself goes to the run through
// the same validated Update as `changeops approve`, and the outcome goes
// back to the clicking user through the interaction's response_url.
type Approvals struct {
	Temporal client.Client
	// Slack reads user group members and users' emails.
	Slack  *slack.Client
	Logger *slog.Logger
	// HTTP posts to response URLs.
	HTTP *http.Client
	// SigningSecret verifies HTTP requests.
	SigningSecret string
	// DecisionKey signs the decisions of verified clicks (gate.SlackKey):
	// the run accepts a Slack decision only with it.
	DecisionKey []byte
	// People links Slack users to people entries.
	People *gate.Gate
	// Directory caches who is in a user group and users' emails.
	Directory *Directory
	// TaskQueue names the deployment whose freezes the slash command
	// changes, and Stacks are its stacks with their approvers.
	TaskQueue string
	Stacks    []config.Stack

	wg sync.WaitGroup
}

// ServeHTTP is the interactivity endpoint (POST /slack/interactions).
// Answers: 200 acknowledged (the outcome follows through response_url),
// 401 unsigned, badly signed or older than five minutes (nothing is
// decided), 413 too large, 400 unreadable.
func (a *Approvals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readVerified(w, r)
	if !ok {
		return
	}
	cb, err := parseInteraction(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
	a.Dispatch(cb)
}

// readVerified reads a request from Slack and checks its signature; when
// it cannot, it answers the request and ok is false.
func (a *Approvals) readVerified(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInteractionBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return nil, false
	case err != nil:
		http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if err := verify(r.Header, body, a.SigningSecret); err != nil {
		a.Logger.Warn("slack request refused", "path", r.URL.Path, "reason", err.Error(), "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// parseInteraction reads Slack's form-encoded interaction request.
func parseInteraction(body []byte) (slack.InteractionCallback, error) {
	var cb slack.InteractionCallback
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		return cb, errors.New("want a form with a payload field")
	}
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return cb, fmt.Errorf("unreadable payload: %w", err)
	}
	return cb, nil
}

// verify checks Slack's request signature and its age. Its errors say
// what was wrong without echoing the computed signature.
func verify(h http.Header, body []byte, secret string) error {
	sv, err := slack.NewSecretsVerifier(h, secret)
	if errors.Is(err, slack.ErrExpiredTimestamp) {
		return errors.New("request timestamp is more than five minutes away: refused as a possible replay")
	}
	if err != nil {
		return errors.New("request is not signed by Slack (X-Slack-Signature, X-Slack-Request-Timestamp)")
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	if sv.Ensure() != nil {
		return errors.New("bad signature: check slack.signing_secret_env")
	}
	return nil
}

// Dispatch starts the decision a verified interaction asks for, if any,
// and returns at once.
func (a *Approvals) Dispatch(cb slack.InteractionCallback) {
	if t, ok := reasonAsked(cb); ok {
		a.inBackground(func(ctx context.Context) { a.askReason(ctx, cb, t) })
		return
	}
	if t, reason, ok := reasonGiven(cb); ok {
		a.inBackground(func(ctx context.Context) { a.reasonGiven(ctx, cb.User.ID, t, reason) })
		return
	}
	b, approve, ok := decisionOf(cb)
	if !ok {
		return
	}
	a.inBackground(func(ctx context.Context) { a.decide(ctx, cb, approve, b) })
}

// inBackground does work after the request was acknowledged (Slack
// waits three seconds only), within decideTimeout; Wait waits for it.
func (a *Approvals) inBackground(work func(ctx context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), decideTimeout)
		defer cancel()
		work(ctx)
	}()
}

// decisionOf is the decision an interaction asks for: a click on one of
// our buttons, whose value names a change run or a drift run.
func decisionOf(cb slack.InteractionCallback) (b slackui.Button, approve, ok bool) {
	if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID == "" {
		return b, false, false
	}
	for _, act := range cb.ActionCallback.BlockActions {
		if act == nil || (act.ActionID != slackui.ActionApprove && act.ActionID != slackui.ActionReject) {
			continue
		}
		b, err := slackui.ParseButton(act.Value)
		if err != nil || (!strings.HasPrefix(b.Workflow, "change/") && !strings.HasPrefix(b.Workflow, "drift/")) {
			return slackui.Button{}, false, false
		}
		return b, act.ActionID == slackui.ActionApprove, true
	}
	return b, false, false
}

// Wait waits for the decisions in flight (on shutdown).
func (a *Approvals) Wait() { a.wg.Wait() }

func (a *Approvals) decide(ctx context.Context, cb slack.InteractionCallback, approve bool, b slackui.Button) {
	user := cb.User.ID
	log := a.Logger.With("run", b.Workflow, "user", user, "approve", approve)
	req, err := a.request(ctx, b, user, approve)
	if err == nil {
		_, err = starter.Send(ctx, a.Temporal, b.Workflow, req)
	}
	if err != nil {
		log.Info("slack decision refused", "reason", err.Error())
		a.reply(ctx, cb.ResponseURL, &slack.WebhookMessage{
			ResponseType: slack.ResponseTypeEphemeral,
			Text:         ":warning: " + slackui.Escape(err.Error()),
		})
		return
	}
	log.Info("slack decision accepted")
	m := slackui.Decided(approve, user, "", time.Now())
	a.reply(ctx, cb.ResponseURL, &slack.WebhookMessage{
		ReplaceOriginal: true,
		Text:            m.Text,
		Blocks:          &slack.Blocks{BlockSet: m.Blocks},
	})
}

// request builds the signed decision of a verified click: for the run and
// the plan its message asked about (for a message of an earlier version,
// which named neither, the ones the workflow has now); through a listed user group the user is in when
// the approvers do not list the user (or their people entry); with four
// eyes, with the user's email, which the run compares with the commit's
// author and committer.
func (a *Approvals) request(ctx context.Context, b slackui.Button, user string, approve bool) (workflows.DecisionRequest, error) {
	run, err := starter.Status(ctx, a.Temporal, b.Workflow)
	if err != nil {
		return workflows.DecisionRequest{}, err
	}
	st := run.Status
	if st == nil {
		return workflows.DecisionRequest{}, fmt.Errorf("change %s cannot be read right now (%s): try again, or use changeops approve", b.Workflow, run.Detail)
	}
	// Checked, the claim below binds what the message asked about; the
	// run checks the claim again at the moment it decides.
	switch {
	case b.Execution != "" && b.Execution != st.RunID:
		return workflows.DecisionRequest{}, fmt.Errorf("this message belongs to an earlier run of %s, which has since been started again: decide on the newest message in the channel", b.Workflow)
	case b.Plan != "" && b.Plan != st.PlanDigest():
		return workflows.DecisionRequest{}, fmt.Errorf("the plan of %s has changed since this message was posted: review the new plan in its thread and decide there", b.Workflow)
	}
	c := gate.Claim{WorkflowID: st.ID, RunID: st.RunID, Approve: approve, Plan: st.PlanDigest(), SlackUser: user, IssuedAt: time.Now()}
	if p, ok := a.People.Person(user); ok {
		c.Person = p.Name
	}
	// A run that needs several approvals may need this person through a
	// user group even when they are listed by name for another
	// requirement: the group the Slack app vouches for counts too.
	via, allowed, err := a.approverOf(ctx, user, st.Approval.Approvers, len(st.Approval.Requirements) > 0)
	if err != nil {
		return workflows.DecisionRequest{}, err
	}
	c.Via = via
	// Under four eyes every approval carries the user's email (the run
	// refuses a Slack approval without one); someone who may not decide
	// at all hears so from the run itself.
	if approve && st.Approval.FourEyes && allowed {
		email, err := a.Directory.Email(ctx, user)
		if err != nil || email == "" {
			return workflows.DecisionRequest{}, fmt.Errorf("change %s needs four eyes, and changeops cannot read your Slack email to compare it with the commit's author (the app needs the users:read.email scope): use changeops approve instead", contract.ShortSHA(st.Commit.SHA))
		}
		c.SlackEmail = email
	}
	signed := gate.SignSlack(a.DecisionKey, c)
	return workflows.DecisionRequest{Signed: &signed}, nil
}

// approverOf says whether a Slack user is one of approvers: listed as
// the user, as their people entry or another Slack user of the entry, or
// a member of a listed user group, which is then via (the run checks the
// claim's via against the same list). With groupsToo a listed user's
// group is looked for as well: in a run needing several approvals it may
// count toward a group's requirement.
func (a *Approvals) approverOf(ctx context.Context, user string, approvers []string, groupsToo bool) (via string, ok bool, err error) {
	listed := slices.Contains(approvers, user)
	if p, found := a.People.Person(user); found {
		listed = listed || slices.Contains(approvers, p.Name) ||
			slices.ContainsFunc(p.Slack, func(id string) bool { return slices.Contains(approvers, id) })
	}
	if listed && !groupsToo {
		return "", true, nil
	}
	for _, g := range approvers {
		if !slackui.IsGroupID(g) {
			continue
		}
		in, err := a.Directory.InGroup(ctx, g, user)
		switch {
		case err != nil && listed:
			return "", true, nil // listed anyway; the group would only add to it
		case err != nil:
			return "", false, fmt.Errorf("cannot read user group %s to check your membership: %w", g, err)
		case in:
			return g, true, nil
		}
	}
	return "", listed, nil
}

func (a *Approvals) reply(ctx context.Context, responseURL string, m *slack.WebhookMessage) {
	if responseURL == "" {
		return
	}
	if err := slack.PostWebhookCustomHTTPContext(ctx, responseURL, a.HTTP, m); err != nil {
		a.Logger.Warn("reply to slack interaction", "error", err)
	}
}

// RunSocketMode receives interactions and slash commands over Socket Mode (for workspaces
// that cannot reach changeops over HTTP) until ctx is done. api must carry
// the app-level token (slack.OptionAppLevelToken).
func (a *Approvals) RunSocketMode(ctx context.Context, api *slack.Client) error {
	sm := socketmode.New(api)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case evt := <-sm.Events:
				switch evt.Type {
				case socketmode.EventTypeInteractive, socketmode.EventTypeSlashCommand:
					if evt.Request != nil {
						sm.Ack(*evt.Request)
					}
					switch d := evt.Data.(type) {
					case slack.InteractionCallback:
						a.Dispatch(d)
					case slack.SlashCommand:
						a.DispatchCommand(d)
					}
				case socketmode.EventTypeErrorBadMessage:
					// Only the cause: the message is what someone typed.
					if bad, ok := evt.Data.(*socketmode.ErrorBadMessage); ok {
						a.Logger.Warn("slack socket mode: unreadable message dropped", "error", bad.Cause.Error())
					}
				case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
					a.Logger.Warn("slack socket mode", "event", string(evt.Type), "detail", fmt.Sprint(evt.Data))
				case socketmode.EventTypeConnected:
					a.Logger.Info("slack socket mode connected")
				}
			}
		}
	}()
	if err := sm.RunContext(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("slack socket mode: %w", err)
	}
	return nil
}
