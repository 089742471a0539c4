package slackapp

import (
	"net/url"
	"strings"
	"testing"

	"github.com/changeops/changeops/internal/slackui"
)

// FuzzInteraction feeds the interaction parser arbitrary request bodies
// (after the signature check, which comes first): it never panics, and a
// decision is taken only from a click on one of changeops' buttons by a
// user, naming a change run.
func FuzzInteraction(f *testing.F) {
	click := `{"type":"block_actions","user":{"id":"U0BOB"},"response_url":"https://hooks.slack.com/x","actions":[{"action_id":"` +
		slackui.ActionApprove + `","value":"change/main/3f2a91c"}]}`
	f.Add("payload=" + url.QueryEscape(click))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","actions":[null]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"view_submission","user":{"id":"U1"}}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"`+slackui.ActionReject+`","value":"queue/web"}]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"`+slackui.ActionApprove+`","value":"{\"w\":\"change/main/abc\",\"r\":\"run\",\"p\":\"digest\"}"}]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"`+slackui.ActionApprove+`","value":"{\"w\":\"queue/web\"}"}]}`))
	f.Add("payload=%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		cb, err := parseInteraction([]byte(body))
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("a refusal with no message")
			}
			return
		}
		b, _, ok := decisionOf(cb)
		if !ok {
			return
		}
		if cb.User.ID == "" || (!strings.HasPrefix(b.Workflow, "change/") && !strings.HasPrefix(b.Workflow, "drift/")) {
			t.Fatalf("a decision from %+v: user %q, run %+v", cb, cb.User.ID, b)
		}
	})
}
