package tests

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/changeops/changeops/config"
)

// channel collects what reaches a Slack channel. It runs on slack-go's
// slacktest server with our own chat.postMessage handler: slacktest's own
// relays posts to RTM clients from several goroutines over one websocket,
// which the race detector flags once a run posts a dozen messages.
type channel struct {
	mu   sync.Mutex
	seen []string
}

// slackChannel points cfg's Slack notifier at a slacktest server and
// returns the channel's messages as they arrive.
func slackChannel(t *testing.T, cfg *config.Config) *channel {
	t.Helper()
	ch := &channel{}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			// slack-go sends the token as a bearer header or a form field.
			if r.Header.Get("Authorization") != "Bearer xoxb-e2e" && r.PostForm.Get("token") != "xoxb-e2e" {
				http.Error(w, `{"ok":false,"error":"invalid_auth"}`, http.StatusUnauthorized)
				return
			}
			if r.PostForm.Get("channel") == "C0CHANGES" {
				ch.mu.Lock()
				ch.seen = append(ch.seen, r.PostForm.Get("text"))
				ch.mu.Unlock()
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"%d.000100"}`, r.PostForm.Get("channel"), time.Now().Unix())
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
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
