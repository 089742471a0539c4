package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// A change run on an auto stack starts the Pulumi CLI for the engine and
// little else (counted by a wrapper around the toolchain's CLI that logs
// each call): the stack's selection (and creation, the first time), the
// plan's preview, the up and the history entry that names it, and the
// no_changes check's preview; never `stack output`, which nothing of the
// run reads. Its short steps (Inspect, Effective, Window) and its last
// notification are local activities, markers in its history instead of
// scheduled activities.
func TestChangeRunStartsOnlyTheEngine(t *testing.T) {
	const branch = "e2e-lean"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))

	calls := filepath.Join(t.TempDir(), "calls.log")
	shim := filepath.Join(t.TempDir(), "pulumi")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %q\nexec %q \"$@\"\n", calls, filepath.Join(tools, "bin", "pulumi"))
	if err := os.WriteFile(shim, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-lean", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{NoChanges: true}},
	})
	cfg.Pulumi.CLI = shim
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	before, _ := os.ReadFile(calls) // the worker's own checks of the CLI

	sha := remote.Commit("Serve v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v2" {
		t.Fatalf("deployed file = %q, %v; want v2", got, err)
	}
	if a := run.Status.Applies; len(a) != 1 || a[0].UpdateStarted == "" {
		t.Errorf("applies = %+v, want the update named by its start time", a)
	}

	all, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(all[len(before):])), "\n") {
		if cmd := subcommand(line); cmd != "version" { // once per worker, at its first Pulumi step
			got = append(got, cmd)
		}
	}
	want := []string{"stack select", "stack init", "preview", "up", "stack history", "preview"}
	if !slices.Equal(got, want) {
		t.Errorf("the run started the pulumi CLI for %q, want %q", got, want)
	}

	// The run is succeeded before its last notification; its history is
	// whole once it completes.
	if err := c.GetWorkflow(context.Background(), id, "").Get(context.Background(), nil); err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	scheduled, local := activitiesOf(t, c, id)
	for _, short := range []string{"Inspect", "Effective", "Window"} {
		if slices.Contains(scheduled, short) || !slices.Contains(local, short) {
			t.Errorf("%s: scheduled activities %v, local %v; want it local only", short, scheduled, local)
		}
	}
	if !slices.Contains(local, "Notify") || !slices.Contains(scheduled, "Notify") {
		t.Errorf("notifications: scheduled %v, local %v; want the last one local, the others scheduled", scheduled, local)
	}
	recordHistory(t, c, id, "change_local_steps.json")
}

// subcommand is the CLI command of a logged call: its first word, and the
// second after "stack".
func subcommand(call string) string {
	var words []string
	for _, w := range strings.Fields(call) {
		if !strings.HasPrefix(w, "-") {
			words = append(words, w)
		}
	}
	switch {
	case len(words) == 0:
		return call
	case words[0] == "stack" && len(words) > 1:
		return "stack " + words[1]
	}
	return words[0]
}

// activitiesOf lists a run's scheduled activities and its local
// activities (their markers), in order.
func activitiesOf(t *testing.T, c client.Client, id string) (scheduled, local []string) {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			t.Fatalf("read history of %s: %v", id, err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled = append(scheduled, a.GetActivityType().GetName())
		}
		if m := e.GetMarkerRecordedEventAttributes(); m != nil && m.GetMarkerName() == "LocalActivity" {
			var data struct{ ActivityType string }
			if err := converter.GetDefaultDataConverter().FromPayloads(m.GetDetails()["data"], &data); err != nil {
				t.Fatalf("read a local activity marker of %s: %v", id, err)
			}
			local = append(local, data.ActivityType)
		}
	}
	return scheduled, local
}
