package slackui

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/internal/notify"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current rendering")

var at = time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)

func run(kind notify.Kind, state, step, detail string) notify.Event {
	return notify.Event{
		RunID: "change/main/3f2a91c0aa", Branch: "main", Commit: "3f2a91c0aa0000", Subject: "Change the <greeting> & more",
		Author: "Alice", Stacks: []string{"web"}, State: state, Kind: kind, Step: step, Detail: detail,
		URL: "http://localhost:8233/namespaces/default/workflows/change%2Fmain%2F3f2a91c0aa",
	}
}

// Every message a run can send, rendered and compared with its golden file
// (go test ./internal/slackui -update rewrites them).
func TestGolden(t *testing.T) {
	planned := run(notify.KindPlanned, "planning", "plan ready", "")
	planned.Plans = []notify.Plan{
		{Stack: "web", Update: 1, Same: 2, Diff: "  pulumi:pulumi:Stack: (same)\n  ~ changeops:index:File: (update)\n      [urn=urn:pulumi:prod::site::changeops:index:File::page]\n    ~ content: \"hello\" => \"hi\"\n"},
		{Stack: "db", Delete: 1, Replace: 1},
	}
	huge := run(notify.KindPlanned, "planning", "plan ready", "")
	huge.Plans = []notify.Plan{{Stack: "web", Create: 400, Diff: strings.Repeat("+ changeops:index:File: (create)\n", 400)}}
	ask := run(notify.KindApproval, "awaiting-approval", "awaiting approval", "")
	ask.Ask = &notify.Ask{Approvers: []string{"U01BOB", "S02PLATFORM", "carol"}, FourEyes: true, Deadline: at.Add(24 * time.Hour),
		Execution: "9f1c2d3e-0000-4000-8000-000000000001", Plan: "5e8a0c4b"}
	decided := run(notify.KindDecision, "awaiting-approval", "approved by U01BOB", "lgtm")
	decided.Decision = &notify.Decision{Approve: true, User: "U01BOB", Comment: "lgtm <!channel>", At: at}
	auto := run(notify.KindDecision, "planning", "approved by policy", "")
	auto.Decision = &notify.Decision{Approve: true, User: "policy", Auto: true, At: at}
	verified := run(notify.KindVerified, "verifying", "verified web", "")
	verified.Checks = []notify.Check{
		{Stack: "web", Name: "http http://127.0.0.1:8089/healthz = 200", Passed: true, Detail: "200 OK"},
		{Stack: "web", Name: "no_changes", Passed: true, Detail: "no changes"},
	}
	rejected := run(notify.KindFinished, "rejected", "rejected", `rejected by U01BOB ("not now")`)
	rejected.Decision = &notify.Decision{User: "U01BOB", Comment: "not now", At: at}
	expired := run(notify.KindFinished, "expired", "expired", "no decision within 24h0m0s")
	rewrite := notify.Event{RunID: "watcher/main", Branch: "main", Commit: "9c1e0d2", Kind: notify.KindBranch, State: "history rewritten",
		Step: "history rewritten", Detail: "main no longer holds 3f2a91c: held until changeops ack-rewrite main"}

	found := run(notify.KindDrift, "drift-checking", "drift found", "web differs from 1a2b3c4: re-applying git would take 1 to update\nupdate urn:pulumi:prod::site::changeops:index:File::page (content)")
	found.Subject = "Drift check of stack web"
	found.Plans = []notify.Plan{{Stack: "web", Update: 1, Same: 2, Diff: "  ~ changeops:index:File: (update)\n    ~ content: \"edited\" => \"hello\"\n"}}
	askDrift := run(notify.KindApproval, "awaiting-approval", "awaiting approval", "")
	askDrift.Subject = "Drift check of stack web"
	askDrift.Ask = &notify.Ask{Approvers: []string{"U01BOB"}, Deadline: at.Add(24 * time.Hour),
		Question:     "Stack web differs from git (1 to update). Re-apply 1a2b3c4, or accept the difference until the next check?",
		ApproveLabel: "Re-apply git", RejectLabel: "Accept"}

	// What policies said, with text from a policy that must be escaped.
	judged := run(notify.KindPlanned, "planning", "plan ready", "")
	judged.Plans = []notify.Plan{{Stack: "web", Update: 1, PolicyDigest: "0123456789abcdef",
		Denied:   []string{"repo policy buckets.deny: buckets must not be <public> (urn:pulumi:prod::web::aws:s3/bucket:Bucket::assets)"},
		Warnings: []string{"repo policy tickets.warn: no Ticket trailer <!channel>"},
		Requires: []string{"2 approvals from group dba (org policy db.require: deletes a database)"}}}
	askMore := run(notify.KindApproval, "awaiting-approval", "awaiting approval", "")
	askMore.Ask = &notify.Ask{Approvers: []string{"U01BOB", "carol", "dave"}, FourEyes: true, Deadline: at.Add(24 * time.Hour),
		Requirements: []string{"1 from an approver of web", "2 from group dba (org policy db.require of stack web: deletes a database)"}}
	denied := run(notify.KindFinished, "policy-denied", "policy-denied", "denied by policy before anyone was asked: stack web: repo policy buckets.deny: buckets must not be <public> (urn:b)")

	frozen := notify.Event{RunID: "freezes/changeops", Kind: notify.KindFreeze, State: "freeze", Stacks: []string{"web"},
		Step: "stack web frozen by U01BOB until 2026-11-24T11:30:00Z", Detail: "incident <!channel> & <https://evil|login>\nRuns plan and ask as usual."}
	unfrozen := notify.Event{RunID: "freezes/changeops", Kind: notify.KindFreeze, State: "unfreeze",
		Step: "every stack unfrozen by carol", Detail: "all clear"}

	waiting := run(notify.KindWindow, "waiting-for-window", "waiting for window",
		"Waiting: stack web frozen by U01BOB since 2026-11-24T09:30:00Z: incident; applies once unfrozen (changeops unfreeze)")

	cases := map[string]Message{
		"planned_policy":     Step(judged, 1),
		"approval_policy":    Step(askMore, 1),
		"policy_denied":      Step(denied, 1),
		"waiting_for_window": Step(waiting, 1),
		"reason_unfreeze":    {Text: "modal", Blocks: ReasonModal(Target{Verb: "unfreeze", Target: "web", Channel: "C1"}, 2000).Blocks.BlockSet},
		"reason_override":    {Text: "modal", Blocks: ReasonModal(Target{Verb: "override", Target: "change/main/3f2a91c0aa"}, 2000).Blocks.BlockSet},
		"frozen":             Standalone(frozen),
		"unfrozen":           Standalone(unfrozen),
		"drift_found":        Step(found, 1),
		"drift_approval":     Step(askDrift, 1),
		"parent_drift":       Parent(run(notify.KindFinished, "drift-healed", "drift-healed", "re-applied 1a2b3c4 to web and verified")),
		"parent_awaiting":    Parent(ask),
		"parent_succeeded":   Parent(run(notify.KindFinished, "succeeded", "succeeded", "applied and verified")),
		"received":           Step(run(notify.KindReceived, "planning", "received", "stacks/web/index.html\nstacks/web/Pulumi.yaml"), 1),
		"planned":            Step(planned, 1),
		"planned_truncated":  Step(huge, 1),
		"approval":           Step(ask, 1),
		"retrying":           Step(run(notify.KindRetrying, "applying", "waiting for the lock on web", "apply stack web (prod) at 1a2b3c4: waiting for the lock held by ann@laptop (pid 7)\nattempt 2 failed; tried again until 2026-12-02 14:00 UTC (stacks[].lock_wait of web is 4h0m0s)"), 1),
		"decided":            Step(decided, 1),
		"decided_by_policy":  Step(auto, 1),
		"applying":           Step(run(notify.KindApplying, "applying", "applying", ""), 1),
		"applied":            Step(run(notify.KindApplied, "applying", "applied", "web: +0 ~1 ±0 -0 (=2), update #3"), 1),
		"verified":           Step(verified, 1),
		"rolling_back":       Step(run(notify.KindRollingBack, "rolling-back", "rolling back", "verification of web failed after 3 rounds"), 1),
		"revert":             Step(run(notify.KindRevert, "rolling-back", "revert pushed", `8d0c2b1 Revert "Change the greeting"`), 1),
		"revert_conflict":    Step(run(notify.KindRevertConflict, "rolling-back", "revert conflicts", "stacks/web/index.html"), 1),
		"restored":           Step(run(notify.KindRestored, "rolling-back", "restored web", "restored to 1a2b3c4 and verified"), 1),
		"rolled_back":        Step(run(notify.KindFinished, "rolled-back", "rolled-back", "verification of web failed; rolled back"), 1),
		"failed_retry":       Step(run(notify.KindFinished, "failed", "failed", "plan web: error: unknown resource type"), 3),
		"closed_decided":     Closed(decided),
		"closed_rejected":    Closed(rejected),
		"closed_expired":     Closed(expired),
		"clicked":            Decided(true, "U01BOB", "", at),
		"branch_rewrite":     Standalone(rewrite),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			got := encode(t, m)
			checkLimits(t, m)
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/slackui -update to write it)", err)
			}
			if string(want) != got+"\n" {
				t.Errorf("%s renders differently from %s:\n%s", name, path, got)
			}
		})
	}
}

// encode renders v as indented JSON, with < and > as Slack receives them.
func encode(t *testing.T, v any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// checkLimits holds a message to Slack's limits: at most 50 blocks, 3000
// characters in a section's text.
func checkLimits(t *testing.T, m Message) {
	t.Helper()
	if len(m.Blocks) > maxBlocks {
		t.Errorf("%d blocks, Slack takes %d", len(m.Blocks), maxBlocks)
	}
	raw, _ := json.Marshal(m.Blocks)
	var blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Text string `json:"text"`
		} `json:"text"`
	}
	if err := json.Unmarshal(raw, &blocks); err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		if b.Text != nil && len([]rune(b.Text.Text)) > maxSectionText {
			t.Errorf("block %d (%s): %d characters, Slack takes %d", i, b.Type, len([]rune(b.Text.Text)), maxSectionText)
		}
	}
	if m.Text == "" {
		t.Error("no fallback text")
	}
}

// Text from commits and people cannot forge mentions or links.
func TestUserTextIsEscaped(t *testing.T) {
	e := run(notify.KindFinished, "rejected", "rejected", "<!channel> see <https://evil.example|docs>")
	e.Subject = "<@U0ADMIN> & co"
	raw := encode(t, append(Parent(e).Blocks, Step(e, 1).Blocks...))
	if !strings.Contains(raw, "&lt;!channel&gt;") {
		t.Fatalf("the detail is not in the message: %s", raw)
	}
	for _, bad := range []string{"<!channel>", "<@U0ADMIN>", "<https://evil.example"} {
		if strings.Contains(raw, bad) {
			t.Errorf("rendered %s unescaped: %s", bad, raw)
		}
	}
}

func TestIDs(t *testing.T) {
	for id, want := range map[string][2]bool{
		"U01BOB": {true, false}, "W0ENT": {true, false}, "S02PLATFORM": {false, true},
		"alice": {false, false}, "S": {false, false}, "Sam": {false, false}, "U0-1": {false, false},
	} {
		if got := [2]bool{IsUserID(id), IsGroupID(id)}; got != want {
			t.Errorf("%s: user, group = %v, want %v", id, got, want)
		}
	}
}
