package tests

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/slackui"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// slackSetup is a site stack decided in Slack: approvers U0BOB, U0ALICE
// (who writes the commits) and the user group S0PLATFORM, with four eyes.
func slackSetup(t *testing.T, branch string, timeout time.Duration) (*workspace, func(msg, content string) string, *config.Config) {
	t.Helper()
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-" + branch, Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual,
		Approvers: []string{"U0ALICE", "U0BOB", "S0PLATFORM"}, FourEyes: true,
		ApprovalTimeout: config.Duration(timeout),
	})
	ws := slackWorkspace(t, cfg)
	ws.groups["S0PLATFORM"] = []string{"U0CAROL", "U0DAVE"}
	ws.emails["U0ALICE"] = "Alice@Example.com"
	ws.emails["U0CAROL"] = "carol@example.com"
	ws.emails["U0BOB"] = "bob@example.com" // U0DAVE hides his
	set := func(msg, content string) string {
		return remote.Commit(msg, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"})
	}
	return ws, set, cfg
}

// The buttons, end to end: Slack's requests reach the worker's endpoint
// signed like Slack signs them. Forged and stale requests are refused with
// 401 and decide nothing; a person who may not decide, the commit's author
// under four eyes, and an approver whose email Slack hides (so four eyes
// cannot be checked) hear why privately while the run keeps waiting, and
// so does a click whose button names another run or plan than the run's
// now; a member of a listed user group approves, and a double click
// decides once. The channel then reads as the run's story.
func TestSlackButtonsDecide(t *testing.T) {
	const branch = "e2e-slack"
	ws, set, cfg := slackSetup(t, branch, time.Hour)
	w := startWorkerFull(t, cfg)
	c := w.Client()
	endpoint := "http://" + w.Addr() + "/slack/interactions"
	waitWatching(t, c, branch)

	sha := set("Serve v2", "v2")
	id := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
	th := ws.waitThread(t, sha[:7], contract.StateAwaitingApproval, "received", "plan ready", "Waiting for a decision on "+sha[:7])
	buttons := th[2].Blocks
	for _, want := range []string{slackui.ActionApprove, slackui.ActionReject, "<@U0BOB>", "<!subteam^S0PLATFORM>", "Four eyes"} {
		if !strings.Contains(buttons, want) {
			t.Errorf("approval message lacks %s: %s", want, buttons)
		}
	}
	value := buttonValue(t, buttons)
	asked := waitState(t, c, id, time.Second, contract.StateAwaitingApproval)
	if want := (slackui.Button{Workflow: id, Execution: asked.Status.RunID, Plan: asked.Status.PlanDigest()}); value != want {
		t.Fatalf("the buttons carry %+v, want the run and its plan %+v", value, want)
	}

	forged := approveClick("U0BOB", id, "/response/forged")
	forged.secret = "not-the-secret"
	if code := ws.send(t, endpoint, forged); code != http.StatusUnauthorized {
		t.Errorf("forged click answered %d, want 401", code)
	}
	stale := approveClick("U0BOB", id, "/response/stale")
	stale.at = time.Now().Add(-6 * time.Minute)
	if code := ws.send(t, endpoint, stale); code != http.StatusUnauthorized {
		t.Errorf("stale click answered %d, want 401", code)
	}

	for _, refused := range []struct{ user, path, why string }{
		{"U0MALLORY", "/response/mallory", "U0MALLORY may not decide change " + sha[:7]},
		{"U0ALICE", "/response/alice", "U0ALICE is linked to the author of commit " + sha[:7] + " by email alice@example.com"},
		{"U0DAVE", "/response/dave", "cannot read your Slack email"},
		{"U0BOB", "/response/other-plan", "the plan of " + id + " has changed since this message was posted"},
		{"U0BOB", "/response/other-run", "this message belongs to an earlier run of " + id},
	} {
		b := value
		switch refused.path {
		case "/response/other-plan":
			b.Plan = strings.Repeat("0", 64)
		case "/response/other-run":
			b.Execution = "00000000-0000-4000-8000-000000000000"
		}
		if code := ws.send(t, endpoint, approveClick(refused.user, b.Value(), refused.path)); code != http.StatusOK {
			t.Fatalf("click by %s answered %d, want 200", refused.user, code)
		}
		r := ws.replyTo(t, refused.path)
		if r.ResponseType != slack.ResponseTypeEphemeral || r.ReplaceOriginal || !strings.Contains(r.Text, refused.why) {
			t.Errorf("reply to %s = %+v, want an ephemeral %q", refused.user, r, refused.why)
		}
	}
	if run := waitState(t, c, id, time.Second, contract.StateAwaitingApproval); run.Status.Decision != nil {
		t.Fatalf("refused clicks decided the run: %+v", run.Status.Decision)
	}

	// Carol is in S0PLATFORM; she clicks twice.
	var wg sync.WaitGroup
	for _, path := range []string{"/response/carol-1", "/response/carol-2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code := ws.send(t, endpoint, approveClick("U0CAROL", value.Value(), path)); code != http.StatusOK {
				t.Errorf("click by carol answered %d", code)
			}
		}()
	}
	wg.Wait()
	r1, r2 := ws.replyTo(t, "/response/carol-1"), ws.replyTo(t, "/response/carol-2")
	if r1.ReplaceOriginal == r2.ReplaceOriginal {
		t.Fatalf("double click: replies %+v and %+v, want one accepted (replacing the buttons) and one refused", r1, r2)
	}
	accepted, refused := r1, r2
	if r2.ReplaceOriginal {
		accepted, refused = r2, r1
	}
	if !strings.Contains(accepted.Text, "Approved* by <@U0CAROL>") || !strings.Contains(refused.Text, "already decided by U0CAROL") {
		t.Errorf("accepted %q, refused %q", accepted.Text, refused.Text)
	}

	run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if d := run.Status.Decision; d == nil || d.User != "U0CAROL" || d.Via != "S0PLATFORM" || !d.Approve {
		t.Errorf("decision = %+v, want U0CAROL through S0PLATFORM", d)
	}
	th = ws.waitThread(t, sha[:7], contract.StateSucceeded, "received", "plan ready", "Approved* by <@U0CAROL>",
		"approved by U0CAROL", "applying", "applied", contract.StateSucceeded)
	if closed := th[2]; strings.Contains(closed.Blocks, slackui.ActionApprove) || !strings.Contains(closed.Blocks, "Approved* by <@U0CAROL>") {
		t.Errorf("the approval message still has its buttons or does not say who approved: %s", closed.Blocks)
	}
	parent, _ := ws.parentOf(sha[:7])
	if parent.Updates == 0 || !strings.Contains(parent.Blocks, ":white_check_mark: *succeeded*") {
		t.Errorf("the parent message was not updated in place to succeeded (%d updates): %s", parent.Updates, parent.Blocks)
	}
	if n := len(ws.parents()); n != 1 {
		t.Errorf("the channel holds %d top-level messages, want one per run", n)
	}

	// Reject, the other button, on a message of an earlier version whose
	// buttons carried the workflow ID alone: it still decides.
	sha2 := set("Serve v3", "v3")
	id2 := contract.ChangeWorkflowID(branch, sha2)
	waitState(t, c, id2, time.Minute, contract.StateAwaitingApproval)
	reject := approveClick("U0BOB", id2, "/response/reject")
	reject.action = slackui.ActionReject
	if code := ws.send(t, endpoint, reject); code != http.StatusOK {
		t.Fatalf("reject click answered %d", code)
	}
	waitState(t, c, id2, time.Minute, contract.StateRejected)
	th = ws.waitThread(t, sha2[:7], contract.StateRejected, "received", "plan ready", "Rejected* by <@U0BOB>", contract.StateRejected)
	if !strings.Contains(th[2].Blocks, "Rejected* by <@U0BOB>") {
		t.Errorf("the approval message does not say who rejected: %s", th[2].Blocks)
	}
}

// No decision in time: the run expires, the buttons are replaced by why,
// and a Slack that answers the first messages with 429 (Retry-After)
// loses and repeats nothing.
func TestSlackExpiryUnderRateLimits(t *testing.T) {
	const branch = "e2e-slack-expiry"
	ws, set, cfg := slackSetup(t, branch, 4*time.Second)
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)

	ws.mu.Lock()
	ws.limited = 2
	ws.mu.Unlock()
	sha := set("Serve v2", "v2")
	waitState(t, c, contract.ChangeWorkflowID(branch, sha), time.Minute, contract.StateExpired)
	th := ws.waitThread(t, sha[:7], contract.StateExpired, "received", "plan ready", "No longer waiting", contract.StateExpired)
	if !strings.Contains(th[2].Blocks, "No longer waiting for a decision: the run is *expired*") || strings.Contains(th[2].Blocks, slackui.ActionApprove) {
		t.Errorf("the approval message after expiry: %s", th[2].Blocks)
	}
	ws.mu.Lock()
	left, calls := ws.limited, strings.Join(ws.calls, " ")
	ws.mu.Unlock()
	if left != 0 {
		t.Fatalf("only %d of 2 rate-limited answers were used: %s", 2-left, calls)
	}
	if n := len(ws.parents()); n != 1 {
		t.Errorf("%d parent messages after rate limits, want 1", n)
	}
	t.Log("slack calls:", calls)
}

// Socket Mode: changeops opens the websocket with the app-level token, and
// a click Slack sends over it is acknowledged (envelope ID) and decides the
// run, exactly like a click over HTTP, and so are slash commands (an
// approver's freeze and unfreeze); the HTTP endpoints are not served.
func TestSlackSocketModeDecides(t *testing.T) {
	const branch = "e2e-slack-socket"
	ws, set, cfg := slackSetup(t, branch, time.Hour)
	cfg.Slack.SocketMode, cfg.Slack.AppTokenEnv = true, "SLACK_APP_TOKEN"
	cfg.Slack.SigningSecretEnv, cfg.Secrets.SlackSigningSecret = "", ""
	cfg.Secrets.SlackAppToken = slackAppToken
	if err := cfg.Validate(); err != nil {
		t.Fatalf("socket mode without a signing secret: %v", err)
	}
	w := startWorkerFull(t, cfg)
	c := w.Client()
	waitWatching(t, c, branch)

	var conn *websocket.Conn
	select {
	case conn = <-ws.sockets:
		t.Cleanup(func() { conn.Close() })
	case <-time.After(30 * time.Second):
		t.Fatal("changeops opened no Socket Mode connection")
	}
	if err := conn.WriteJSON(map[string]any{"type": "hello", "num_connections": 1}); err != nil {
		t.Fatal(err)
	}
	// Slack pings the connection every few seconds; a client that hears
	// none for 30 s drops it and connects again.
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second))
			}
		}
	}()
	if code := ws.send(t, "http://"+w.Addr()+"/slack/interactions", approveClick("U0BOB", "change/x", "/response/http")); code == http.StatusOK {
		t.Errorf("the HTTP endpoint answers %d in socket mode; it should not be served", code)
	}
	if code := ws.command(t, "http://"+w.Addr()+"/slack/commands", slackSecret, "U0BOB", "freeze all http", "/response/http"); code == http.StatusOK {
		t.Errorf("the commands endpoint answers %d in socket mode; it should not be served", code)
	}

	sha := set("Serve v2", "v2")
	id := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
	click := approveClick("U0BOB", id, "/response/socket")
	overSocket(t, conn, "interactive", "env-1", json.RawMessage(ws.payload(click)))
	if r := ws.replyTo(t, "/response/socket"); !r.ReplaceOriginal || !strings.Contains(r.Text, "Approved* by <@U0BOB>") {
		t.Errorf("reply = %+v, want the buttons replaced by the approval", r)
	}
	if run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded || run.Approver != "U0BOB" {
		t.Fatalf("run ended %s, approved by %q: %s", run.State, run.Approver, run.Error)
	}

	overSocket(t, conn, "slash_commands", "env-2", map[string]any{
		"command": "/changeops", "text": "freeze site-" + branch + " maintenance", "user_id": "U0BOB", "channel_id": slackChannel,
		"is_enterprise_install": "false", // a string, as Slack sends it (slack-go requires it)
		"response_url":          ws.srv.GetAPIURL() + "response/socket-freeze",
	})
	if r := ws.replyTo(t, "/response/socket-freeze"); !strings.Contains(r.Text, "frozen stack site-"+branch+": maintenance") {
		t.Errorf("reply to the freeze over socket mode = %+v", r)
	}
	ws.waitMessage(t, "stack site-"+branch+" frozen by U0BOB")
	overSocket(t, conn, "slash_commands", "env-3", map[string]any{
		"command": "/changeops", "text": "unfreeze site-" + branch + " done", "user_id": "U0BOB", "channel_id": slackChannel,
		"is_enterprise_install": "false", "response_url": ws.srv.GetAPIURL() + "response/socket-unfreeze",
	})
	if r := ws.replyTo(t, "/response/socket-unfreeze"); !strings.Contains(r.Text, "unfrozen stack site-"+branch) {
		t.Errorf("reply to the unfreeze over socket mode = %+v", r)
	}
	ws.waitMessage(t, "stack site-"+branch+" unfrozen by U0BOB")
}

// overSocket plays Slack on a Socket Mode connection: it sends an event
// of type kind and waits for changeops to acknowledge its envelope.
func overSocket(t *testing.T, conn *websocket.Conn, kind, envelope string, payload any) {
	t.Helper()
	if err := conn.WriteJSON(map[string]any{
		"type": kind, "envelope_id": envelope, "accepts_response_payload": false, "payload": payload,
	}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if err := conn.ReadJSON(&ack); err != nil {
			t.Fatalf("no acknowledgement of %s %s: %v", kind, envelope, err)
		}
		if ack.EnvelopeID == envelope {
			return
		}
	}
}
