package starter

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/jsonout"
	"github.com/changeops/changeops/workflows"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files")

// The scripted contract of `changeops status --json` (and list's lines):
// snake_case keys all the way down, durations as strings, times in
// RFC 3339. A change to the golden file is a change to the contract
// (docs/cli.md).
func TestStatusJSONContract(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	run := Run{
		ID: "change/main/3f2a91c0aa", Kind: KindChange, Commit: "3f2a91c0aa", Stacks: []string{"web"}, State: contract.StateSucceeded,
		Approver: "bob", Author: "alice@example.com", Subject: "Serve v2", Deployment: "changeops", Build: "b1", Versioning: "pinned",
		Frozen: []Frozen{FrozenLine(activities.Freeze{Stack: "web", Reason: "incident 4711", By: "carol", Method: "ssh", Key: "SHA256:abc", At: at})},
		Status: &workflows.Status{
			Kind: contract.KindChange, ID: "change/main/3f2a91c0aa", RunID: "9f1c2d3e", Branch: "main",
			Commit:       activities.Commit{SHA: "3f2a91c0aa", Subject: "Serve v2", AuthorName: "Alice", AuthorEmail: "alice@example.com", When: at},
			ChangedPaths: []string{"stacks/web/Pulumi.prod.yaml"}, Stacks: []string{"web"}, State: contract.StateSucceeded,
			Plans:    []activities.PlanResult{{Stack: "web", Update: 1, Same: 2, Steps: "s1", Digest: "d1"}},
			Approval: workflows.Approval{Required: true, Stacks: []string{"web"}, Approvers: []string{"bob"}, Timeout: 24 * time.Hour, Deadline: at.Add(24 * time.Hour)},
			Decision: &workflows.Decision{Approve: true, User: "bob", At: at.Add(time.Minute), Method: "ssh", Key: "SHA256:abc"},
			Applies:  []activities.ApplyResult{{Stack: "web", Update: 1, Same: 2, UpdateVersion: 3}},
			Steps:    []workflows.Step{{State: contract.StatePlanning, At: at}, {State: contract.StateSucceeded, At: at.Add(2 * time.Minute)}},
		},
	}
	goldenJSON(t, run, "status.json")
}

// The freezes `list --json` prints before the runs: a freeze of one stack
// with an end, and one of every stack without.
func TestListFreezesJSONContract(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	st := activities.FreezesState{Freezes: []activities.Freeze{
		{Stack: "web", Reason: "incident 4711", By: "carol", Method: "ssh", Key: "SHA256:abc", At: at, Until: at.Add(2 * time.Hour)},
		{Reason: "release freeze", By: "U0BOB", Method: "slack", At: at.Add(time.Minute)},
		{Stack: "db", Reason: "ran out", By: "bob", At: at.Add(-2 * time.Hour), Until: at.Add(-time.Hour)},
	}}
	var lines []Frozen
	for _, f := range InForce(st, at.Add(2*time.Minute)) {
		lines = append(lines, FrozenLine(f))
	}
	goldenJSON(t, lines, "list_freezes.json")
}

// goldenJSON compares v, written in the JSON style, with a golden file.
func goldenJSON(t *testing.T, v any, name string) {
	t.Helper()
	var b bytes.Buffer
	if err := jsonout.Encode(&b, v); err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, b.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./starter -update writes it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("the JSON contract changed:\n%s\nwant (testdata/%s):\n%s", pretty.Bytes(), name, want)
	}
}
