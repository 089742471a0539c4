// Package slackapp is changeops' Slack app: the notifier that keeps one
// thread per change run in a channel, and the interactivity that turns a
// click on Approve or Reject into a verified, authorised decision, over
// HTTP or Socket Mode.
package slackapp

import (
	"context"
	"errors"
	"fmt"

	"github.com/slack-go/slack"

	"github.com/changeops/changeops/internal/notify"
	"github.com/changeops/changeops/internal/slackui"
)

// Notifier posts a run's messages to a channel: one parent message per run,
// updated in place (chat.update) as the state changes, step messages in its
// thread, and approval buttons that are replaced by the decision. Events of
// no run (a branch's watcher, a stack's queue, the freezes) are messages
// of their own.
type Notifier struct {
	Client  *slack.Client
	Channel string
}

// NewNotifier builds a notifier; apiURL overrides Slack's API base (tests
// point it at slacktest) and may be empty.
func NewNotifier(token, channel, apiURL string) *Notifier {
	return &Notifier{Client: newClient(token, apiURL), Channel: channel}
}

func newClient(token, apiURL string) *slack.Client {
	var opts []slack.Option
	if apiURL != "" {
		opts = append(opts, slack.OptionAPIURL(apiURL))
	}
	return slack.New(token, opts...)
}

// Notify delivers one event. The order matters for retries: the parent is
// posted first and checkpointed (a retry finds it), the in-place updates
// that follow are idempotent, and the step message, the one post a lost
// response could repeat, goes last.
func (n *Notifier) Notify(ctx context.Context, d *notify.Delivery) error {
	e := d.Event
	if e.Kind == notify.KindBranch || e.Kind == notify.KindQueue || e.Kind == notify.KindFreeze {
		return n.post(ctx, n.Channel, "", slackui.Standalone(e))
	}
	// A commit that touches no stack is only logged: the channel lists
	// changes, not every commit on the branch.
	if len(e.Stacks) == 0 {
		return nil
	}
	th := &d.Thread
	if e.Kind == notify.KindRetrying {
		// Sent by an activity while the run waits on it, beside the run's
		// own ordered messages: a reply in the thread, never a change to
		// the parent or the approval buttons, and nothing before the run
		// has a thread (the log has it).
		if th.ParentTS == "" {
			return nil
		}
		return n.post(ctx, th.Channel, th.ParentTS, slackui.Step(e, 1))
	}
	if th.Channel == "" {
		th.Channel = n.Channel
	}
	switch {
	case th.ParentTS == "":
		ts, err := n.postTS(ctx, th.Channel, "", slackui.Parent(e), runMetadata(e))
		if err != nil {
			return err
		}
		th.ParentTS, th.State = ts, e.State
		d.Save()
	case th.State != e.State || e.Kind == notify.KindFinished:
		if err := n.update(ctx, th.Channel, th.ParentTS, slackui.Parent(e)); err != nil {
			return err
		}
		th.State = e.State
	}
	if th.ApprovalTS != "" && (e.Kind == notify.KindDecision || e.State != "awaiting-approval") {
		if err := n.update(ctx, th.Channel, th.ApprovalTS, slackui.Closed(e)); err != nil {
			return err
		}
		th.ApprovalTS = ""
	}
	ts, err := n.postTS(ctx, th.Channel, th.ParentTS, slackui.Step(e, d.Attempt))
	if err != nil {
		return err
	}
	if e.Kind == notify.KindApproval {
		th.ApprovalTS = ts
	}
	return nil
}

// Check asks Slack who the token belongs to (auth.test). A token Slack
// refuses is an ErrBadToken; other errors (Slack unreachable) are not.
func (n *Notifier) Check(ctx context.Context) (*slack.AuthTestResponse, error) {
	res, err := n.Client.AuthTestContext(ctx)
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired":
			return nil, fmt.Errorf("%w: Slack answered %s", ErrBadToken, se.Err)
		}
	}
	return res, err
}

// ErrBadToken: Slack refuses the bot token.
var ErrBadToken = errors.New("slack refused the bot token")

func (n *Notifier) post(ctx context.Context, channel, thread string, m slackui.Message) error {
	_, err := n.postTS(ctx, channel, thread, m)
	return err
}

func (n *Notifier) postTS(ctx context.Context, channel, thread string, m slackui.Message, extra ...slack.MsgOption) (string, error) {
	opts := append(m.Options(), extra...)
	if thread != "" {
		opts = append(opts, slack.MsgOptionTS(thread))
	}
	_, ts, err := n.Client.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		// slack-go errors carry Slack's error code, never the token.
		return "", fmt.Errorf("post to slack channel %s: %w", channel, err)
	}
	return ts, nil
}

func (n *Notifier) update(ctx context.Context, channel, ts string, m slackui.Message) error {
	if _, _, _, err := n.Client.UpdateMessageContext(ctx, channel, ts, m.Options()...); err != nil {
		return fmt.Errorf("update slack message %s in %s: %w", ts, channel, err)
	}
	return nil
}

// runMetadata tags a run's parent message, so other tools (and people
// reading the API) can tell which run a message belongs to.
func runMetadata(e notify.Event) slack.MsgOption {
	return slack.MsgOptionMetadata(slack.SlackMetadata{
		EventType:    "changeops_run",
		EventPayload: map[string]any{"run_id": e.RunID, "commit": e.Commit},
	})
}
