package notify

import (
	"context"
	"fmt"

	"github.com/slack-go/slack"
)

// Slack posts each event to a channel with chat.postMessage. Threads, in-place
// updates and buttons belong to the Slack app (internal/slackui).
type Slack struct {
	Client  *slack.Client
	Channel string
}

// NewSlack builds a Slack notifier; apiURL overrides Slack's API base (tests
// point it at slacktest) and may be empty.
func NewSlack(token, channel, apiURL string) *Slack {
	var opts []slack.Option
	if apiURL != "" {
		opts = append(opts, slack.OptionAPIURL(apiURL))
	}
	return &Slack{Client: slack.New(token, opts...), Channel: channel}
}

func (s *Slack) Notify(ctx context.Context, e Event) error {
	_, _, err := s.Client.PostMessageContext(ctx, s.Channel, slack.MsgOptionText(e.Text(), false))
	if err != nil {
		// slack-go errors carry Slack's error code, never the token.
		return fmt.Errorf("post to slack channel %s: %w", s.Channel, err)
	}
	return nil
}
