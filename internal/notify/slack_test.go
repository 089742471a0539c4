package notify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
)

// The message arrives in Slack: slacktest relays what chat.postMessage
// receives to RTM clients, so the test reads it as a Slack client would.
func TestSlackPostsToChannel(t *testing.T) {
	srv := slacktest.NewTestServer()
	srv.Start()
	defer srv.Stop()
	rtm := srv.GetTestRTMInstance()
	go rtm.ManageConnection()
	defer rtm.Disconnect()

	n := NewSlack("xoxb-test-token", "C0123456", srv.GetAPIURL())
	e := Event{RunID: "change/main/3f2a91c0", Commit: "3f2a91c0aa", Subject: "Change web", Stacks: []string{"web"},
		State: "awaiting-approval", Step: "awaiting approval", Detail: "approvers: bob"}
	if err := n.Notify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-rtm.IncomingEvents:
			m, ok := ev.Data.(*slack.MessageEvent)
			if !ok {
				continue
			}
			if m.Channel != "C0123456" {
				t.Fatalf("posted to %s, want C0123456", m.Channel)
			}
			for _, want := range []string{`[awaiting-approval] 3f2a91c "Change web" (web): awaiting approval`, "approvers: bob"} {
				if !strings.Contains(m.Text, want) {
					t.Errorf("message %q does not say %q", m.Text, want)
				}
			}
			return
		case <-timeout:
			t.Fatal("no message reached the channel")
		}
	}
}

func TestSlackErrorNamesChannelNotToken(t *testing.T) {
	srv := slacktest.NewTestServer()
	srv.Start()
	url := srv.GetAPIURL()
	srv.Stop() // Slack is down

	err := NewSlack("xoxb-secret-token", "C0123456", url).Notify(context.Background(), Event{Step: "x"})
	if err == nil {
		t.Fatal("posting to a stopped server succeeded")
	}
	if !strings.Contains(err.Error(), "C0123456") || strings.Contains(err.Error(), "xoxb-secret-token") {
		t.Errorf("error %q should name the channel and never the token", err)
	}
}
