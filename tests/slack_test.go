package tests

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/changeops/changeops/config"
)

// channel collects what reaches a Slack channel, read by an RTM client of
// slack-go's slacktest server as a person's Slack client would.
type channel struct {
	mu   sync.Mutex
	seen []string
}

// slackChannel points cfg's Slack notifier at a slacktest server and
// returns the channel's messages as they arrive.
func slackChannel(t *testing.T, cfg *config.Config) *channel {
	t.Helper()
	srv := slacktest.NewTestServer()
	srv.Start()
	t.Cleanup(srv.Stop)
	rtm := srv.GetTestRTMInstance()
	go rtm.ManageConnection()
	t.Cleanup(func() { _ = rtm.Disconnect() })
	ch := &channel{}
	go func() {
		for ev := range rtm.IncomingEvents {
			if m, ok := ev.Data.(*slack.MessageEvent); ok && m.Channel == "C0CHANGES" {
				ch.mu.Lock()
				ch.seen = append(ch.seen, m.Text)
				ch.mu.Unlock()
			}
		}
	}()
	cfg.Slack = config.Slack{Channel: "C0CHANGES", APIURL: srv.GetAPIURL(), BotTokenEnv: "SLACK_BOT_TOKEN"}
	cfg.Secrets.SlackBotToken = "xoxb-e2e"
	return ch
}

// waitFor waits until a message containing text reached the channel.
func (c *channel) waitFor(t *testing.T, text string) {
	t.Helper()
	waitFor(t, 30*time.Second, "slack message "+text, func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.seen {
			if strings.Contains(m, text) {
				return true, ""
			}
		}
		return false, strings.Join(c.seen, "\n---\n")
	})
}
