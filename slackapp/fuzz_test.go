package slackapp

import (
	"net/url"
	"strings"
	"testing"

	"github.com/changeops/changeops/internal/slackui"
)

// FuzzInteraction feeds the interaction parser arbitrary request bodies
// (after the signature check, which comes first): it never panics, a
// decision is taken only from a click on one of changeops' buttons by a
// user, naming a change run, and a reason is asked for or taken only from
// a user, for a target (which the command's checks then read as typed).
func FuzzInteraction(f *testing.F) {
	click := `{"type":"block_actions","user":{"id":"U0BOB"},"response_url":"https://hooks.slack.com/x","actions":[{"action_id":"` +
		slackui.ActionApprove + `","value":"change/main/3f2a91c"}]}`
	f.Add("payload=" + url.QueryEscape(click))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","actions":[null]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"view_submission","user":{"id":"U1"}}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"`+slackui.ActionReject+`","value":"queue/web"}]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"`+slackui.ActionApprove+`","value":"{\"w\":\"change/main/abc\",\"r\":\"run\",\"p\":\"digest\"}"}]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"`+slackui.ActionApprove+`","value":"{\"w\":\"queue/web\"}"}]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U1"},"trigger_id":"t","actions":[{"block_id":"b","action_id":"`+slackui.ActionUnfreeze+`","value":"{\"v\":\"unfreeze\",\"t\":\"web\"}"}]}`))
	f.Add("payload=" + url.QueryEscape(`{"type":"view_submission","user":{"id":"U1"},"view":{"callback_id":"`+slackui.CallbackReason+`","private_metadata":"{\"v\":\"override\",\"t\":\"3f2a91c\"}","state":{"values":{"`+slackui.ReasonBlock+`":{"`+slackui.ReasonAction+`":{"value":"outage"}}}}}}`))
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
		if tg, ok := reasonAsked(cb); ok && (cb.User.ID == "" || cb.TriggerID == "" || tg.Verb == "" || tg.Target == "") {
			t.Fatalf("a reason asked for by %+v: %+v", cb, tg)
		}
		if tg, _, ok := reasonGiven(cb); ok && (cb.User.ID == "" || tg.Verb == "" || tg.Target == "") {
			t.Fatalf("a reason given by %+v: %+v", cb, tg)
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
