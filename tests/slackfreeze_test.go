package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/slackui"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// The emergency stop and break glass from Slack, on the real engine.
// Slack's slash command reaches the worker signed as Slack signs it; a
// forged one is refused with 401, and someone who is no approver of the
// stack hears privately why their freeze is refused. An approver
// (U0BOB, bob in people) freezes the stack; the freeze is announced in
// the channel and listed by `list --json` and `status`. A change is
// approved and waits in waiting-for-window. Mallory's click on its
// Override window button asks why, then refuses privately. Break glass:
// bob votes to override with the command (recorded, announced, applies
// nothing, says one more vote is needed), votes again on the command
// line (refused: the same person), and carol's vote on the command line
// applies it, recorded as an override in the status and the audit and
// announced in its thread. The stack is still frozen: the next change
// waits until bob clicks Unfreeze on the freeze's announcement and gives
// his reason, and then applies.
func TestSlackFreezeAndBreakGlass(t *testing.T) {
	const branch = "e2e-slack-freeze"
	remote := gittest.New(t, branch)
	page := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", page, "v1"))
	const stack = "site-slack-freeze"
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: stack, Path: "stacks/site", Stack: "test", Approval: config.ApprovalManual,
		Approvers: []string{"bob", "carol"}, FourEyes: true,
	})
	for i := range cfg.People {
		switch cfg.People[i].Name {
		case "bob":
			cfg.People[i].Slack = []string{"U0BOB"}
		case "mallory":
			cfg.People[i].Slack = []string{"U0MALLORY"}
		}
	}
	ws := slackWorkspace(t, cfg)
	ws.emails["U0BOB"] = "bob@example.com"
	w := startWorkerFull(t, cfg)
	c := w.Client()
	endpoint := "http://" + w.Addr() + "/slack/commands"
	interactions := "http://" + w.Addr() + "/slack/interactions"
	waitWatching(t, c, branch)
	ctx := context.Background()
	freezes := contract.FreezesID(cfg.Temporal.TaskQueue)
	set := func(content string) string {
		sha := remote.Commit("Serve "+content, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + page + "\n  site:content: " + content + "\n"})
		return contract.ChangeWorkflowID(branch, sha)
	}

	if code := ws.command(t, endpoint, "not-the-secret", "U0BOB", "unfreeze all forged", "/response/forged"); code != http.StatusUnauthorized {
		t.Errorf("a forged command answered %d, want 401", code)
	}
	ws.command(t, endpoint, slackSecret, "U0MALLORY", "freeze "+stack+" <!channel> mine now", "/response/mallory")
	if r := ws.replyTo(t, "/response/mallory"); r.ResponseType != slack.ResponseTypeEphemeral ||
		!strings.Contains(r.Text, "U0MALLORY may not freeze stack "+stack+": only its approvers may (bob, carol)") {
		t.Errorf("mallory's freeze: reply %+v, want an ephemeral refusal naming the approvers", r)
	}
	ws.command(t, endpoint, slackSecret, "U0BOB", "freeze no-such-stack incident 9", "/response/unknown")
	if r := ws.replyTo(t, "/response/unknown"); !strings.Contains(r.Text, `stack "no-such-stack" is not in the configuration: name one of `+stack+", or all") {
		t.Errorf("a freeze of an unknown stack: reply %q", r.Text)
	}
	waitFor(t, 30*time.Second, "the freezes readable", func() (bool, string) {
		// The freezes workflow the worker started reads its last run's
		// freezes first, and answers nothing until then.
		st, err := starter.Freezes(ctx, c, cfg.Temporal.TaskQueue)
		if err != nil {
			return false, err.Error()
		}
		if len(st.Freezes) != 0 {
			t.Fatalf("refused commands froze something: %+v", st.Freezes)
		}
		return true, ""
	})

	ws.command(t, endpoint, slackSecret, "U0BOB", "freeze "+stack+" incident 9 <!channel>", "/response/freeze")
	if r := ws.replyTo(t, "/response/freeze"); !strings.Contains(r.Text, "frozen stack "+stack+": incident 9 &lt;!channel&gt;") {
		t.Fatalf("bob's freeze: reply %q", r.Text)
	}
	announced := ws.waitMessage(t, "stack "+stack+" frozen by bob")
	if strings.Contains(announced.Blocks, "<!channel>") || !strings.Contains(announced.Blocks, "incident 9 &lt;!channel&gt;") {
		t.Errorf("the freeze's announcement does not escape the reason: %s", announced.Blocks)
	}
	unfreezeButton := actionValue(t, announced.Blocks, slackui.ActionUnfreeze)

	id := set("v2")
	waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(ctx, c, id, signedBy("carol", true, "ship it")); err != nil {
		t.Fatal(err)
	}
	run := waitState(t, c, id, time.Minute, contract.StateWaitingForWindow)
	if !strings.Contains(run.Detail, "stack "+stack+" frozen by bob") {
		t.Errorf("detail = %q, want the freeze", run.Detail)
	}
	code, out, errOut := changeopsWith(t, cfg, "list", "--json")
	if first, _, _ := strings.Cut(out, "\n"); code != 0 || !strings.Contains(first, `"kind":"freeze"`) || !strings.Contains(first, `"by":"bob"`) ||
		!strings.Contains(first, `"method":"slack"`) || !strings.Contains(first, `"stacks":["`+stack+`"]`) || !strings.Contains(out, `"id":"`+id+`"`) {
		t.Errorf("changeops list --json = %d, %q, %q; want the freeze first, then the runs", code, out, errOut)
	}
	code, out, errOut = changeopsWith(t, cfg, "status", id)
	if code != 0 || !strings.Contains(out, "frozen") || !strings.Contains(out, "stack "+stack+" frozen by bob since") {
		t.Errorf("changeops status = %d, %q, %q; want the freeze that holds the run", code, out, errOut)
	}

	// Break glass: bob in Slack, bob again and carol on the command line.
	short := contract.ShortSHA(run.Commit)
	waiting := ws.waitMessage(t, short+" waiting-for-window: waiting for window")
	if !strings.Contains(waiting.Blocks, "/changeops override "+short+" REASON") {
		t.Errorf("the waiting message does not say how to override from Slack: %s", waiting.Blocks)
	}
	// Mallory clicks Override window: asked why, then refused privately.
	ws.clickForReason(t, interactions, "U0MALLORY", slackui.ActionOverride, actionValue(t, waiting.Blocks, slackui.ActionOverride))
	if view := ws.waitView(t, 1); !strings.Contains(view, "Vote to apply "+id+" now") {
		t.Errorf("the Override window button opened %s", view)
	}
	ws.submitReason(t, interactions, "U0MALLORY", ws.waitView(t, 1), "me too")
	ws.waitEphemeral(t, "U0MALLORY", "U0MALLORY may not override the window of change "+short)
	ws.command(t, endpoint, slackSecret, "U0BOB", "override "+short+" customer outage", "/response/override-bob")
	if r := ws.replyTo(t, "/response/override-bob"); !strings.Contains(r.Text, "override vote recorded: 1 of 2 (bob); it applies once 1 more approver(s) vote") {
		t.Fatalf("bob's override in Slack: reply %q", r.Text)
	}
	ws.waitMessage(t, "override vote by bob (1 of 2)")
	if run := waitState(t, c, id, time.Second, contract.StateWaitingForWindow); len(run.Status.Applies) != 0 {
		t.Fatalf("one vote applied the change: %+v", run.Status.Applies)
	}
	code, out, errOut = changeopsWith(t, cfg, "approve", id, "--override-window", "--reason", "again", "--as", "bob", "--key", keyFile(t, "bob"))
	if code == 0 || !strings.Contains(out+errOut, "bob already voted to override") {
		t.Errorf("bob's second vote = %d, %q, %q; want refused as the same person", code, out, errOut)
	}
	code, out, errOut = changeopsWith(t, cfg, "approve", id, "--override-window", "--reason", "agreed", "--as", "carol", "--key", keyFile(t, "carol"))
	if code != 0 {
		t.Fatalf("carol's vote = %d, %q, %q", code, out, errOut)
	}
	run = waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, page, "v2")
	win := run.Status.Window
	if win == nil || !win.Overridden || len(win.Overrides) != 2 || win.Overrides[0].User != "bob" || win.Overrides[0].Method != gate.MethodSlack ||
		win.Overrides[1].User != "carol" || win.Overrides[1].Method != gate.MethodSSH {
		t.Errorf("window = %+v, want overridden by bob in Slack and carol with her key", win)
	}
	ws.waitMessage(t, "window overridden by bob and carol")
	code, out, errOut = changeopsWith(t, cfg, "audit", "--kind", "change")
	if code != 0 || !strings.Contains(out, `"overridden":true`) || !strings.Contains(out, `"overrides":["bob: customer outage","carol: agreed"]`) {
		t.Errorf("changeops audit = %d, %q, %q; want the override with both votes", code, out, errOut)
	}

	// Still frozen: the next change waits, until bob unfreezes in Slack.
	id2 := set("v3")
	waitState(t, c, id2, time.Minute, contract.StateAwaitingApproval)
	code, out, errOut = changeopsWith(t, cfg, "status", id2)
	if code != 0 || !strings.Contains(out, "stack "+stack+" frozen by bob since") || !strings.Contains(out, "(holds the apply)") {
		t.Errorf("changeops status of a run awaiting approval on a frozen stack = %d, %q, %q; want the freeze that will hold it", code, out, errOut)
	}
	code, out, errOut = changeopsWith(t, cfg, "status", id2, "--json")
	if code != 0 || !strings.Contains(out, `"frozen":[{"at":`) || !strings.Contains(out, `"stacks":["`+stack+`"]`) || !strings.Contains(out, `"by":"bob"`) {
		t.Errorf("changeops status --json = %d, %q, %q; want frozen", code, out, errOut)
	}
	if _, err := starter.Decide(ctx, c, id2, signedBy("carol", true, "")); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, id2, time.Minute, contract.StateWaitingForWindow)
	// Bob unfreezes with the button on the freeze's announcement.
	ws.clickForReason(t, interactions, "U0BOB", slackui.ActionUnfreeze, unfreezeButton)
	ws.submitReason(t, interactions, "U0BOB", ws.waitView(t, 2), "incident over")
	ws.waitEphemeral(t, "U0BOB", "unfrozen stack "+stack)
	if run := waitState(t, c, id2, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("second run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, page, "v3")
	ws.waitMessage(t, "stack "+stack+" unfrozen by bob")
	code, out, errOut = changeopsWith(t, cfg, "audit", "--kind", "freeze")
	for _, want := range []string{`"state":"freeze"`, `"state":"unfreeze"`, `"approver":"bob"`, `"approved_via":"slack"`, `"comment":"incident over"`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("changeops audit --kind freeze = %d, %q, %q; want %s", code, out, errOut, want)
		}
	}
	recordHistory(t, c, freezes, "freezes_announced.json")
}

// clickForReason is user's click on a button that asks for a reason
// (Unfreeze, Override window), as Slack sends it, with a trigger to open
// the modal by.
func (ws *workspace) clickForReason(t *testing.T, endpoint, user, action, value string) {
	t.Helper()
	code := ws.interact(t, endpoint, map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user}, "trigger_id": "trigger-" + user,
		"channel": map[string]any{"id": slackChannel}, "response_url": ws.srv.GetAPIURL() + "response/click-" + user,
		"actions": []map[string]any{{"type": "button", "block_id": "changeops_buttons", "action_id": action, "value": value}},
	})
	if code != http.StatusOK {
		t.Fatalf("the click answered %d", code)
	}
}

// submitReason is user's submission of the reason modal view (as opened).
func (ws *workspace) submitReason(t *testing.T, endpoint, user, view, reason string) {
	t.Helper()
	var v struct {
		CallbackID      string `json:"callback_id"`
		PrivateMetadata string `json:"private_metadata"`
	}
	if err := json.Unmarshal([]byte(view), &v); err != nil {
		t.Fatalf("view %s: %v", view, err)
	}
	code := ws.interact(t, endpoint, map[string]any{
		"type": "view_submission", "user": map[string]any{"id": user},
		"view": map[string]any{"callback_id": v.CallbackID, "private_metadata": v.PrivateMetadata, "state": map[string]any{
			"values": map[string]any{slackui.ReasonBlock: map[string]any{slackui.ReasonAction: map[string]any{"type": "plain_text_input", "value": reason}}},
		}},
	})
	if code != http.StatusOK {
		t.Fatalf("the submission answered %d", code)
	}
}

// actionValue is the value of the button with actionID in a message's
// blocks.
func actionValue(t *testing.T, blocks, actionID string) string {
	t.Helper()
	var bs []struct {
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if err := json.Unmarshal([]byte(blocks), &bs); err != nil {
		t.Fatalf("blocks %s: %v", blocks, err)
	}
	for _, b := range bs {
		for _, e := range b.Elements {
			if e.ActionID == actionID {
				return e.Value
			}
		}
	}
	t.Fatalf("no %s button in %s", actionID, blocks)
	return ""
}

// waitMessage waits for a message anywhere in the channel (a parent or a
// thread's) whose text says want, and returns it.
func (ws *workspace) waitMessage(t *testing.T, want string) message {
	t.Helper()
	var found message
	waitFor(t, 30*time.Second, fmt.Sprintf("a message saying %q", want), func() (bool, string) {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		var texts []string
		for _, m := range ws.messages {
			if strings.Contains(m.Text, want) {
				found = *m
				return true, ""
			}
			texts = append(texts, m.Text)
		}
		return false, strings.Join(texts, " | ")
	})
	return found
}
