package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/cmd"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/pulumienv"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
)

// deploy pushes a change to the site at out and waits for its run to
// succeed (approving it as bob when it asks).
func deploy(t *testing.T, c client.Client, remote *gittest.Remote, branch, dir, out, content string) string {
	t.Helper()
	sha := remote.Commit("Serve "+content, map[string]string{dir + "/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"})
	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, time.Minute, contract.StateAwaitingApproval, contract.StateSucceeded, contract.StateFailed)
	if run.State == contract.StateAwaitingApproval {
		if _, err := starter.Decide(context.Background(), c, id, signedBy("bob", true, "")); err != nil {
			t.Fatalf("approve %s: %v", id, err)
		}
	}
	if run = waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
		t.Fatalf("change %s ended %s: %s", id, run.State, run.Error)
	}
	return sha
}

// tamper edits a deployed file out of band: drift.
func tamper(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileIs(t *testing.T, path, want string) {
	t.Helper()
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Fatalf("%s = %q, %v; want %q", path, got, err, want)
	}
}

// driftOf starts a drift check through the starter (what the CLI calls).
func driftOf(t *testing.T, c client.Client, cfg *config.Config, req starter.DriftRequest) string {
	t.Helper()
	id, err := starter.Drift(context.Background(), c, cfg, req)
	if err != nil {
		t.Fatalf("drift %s: %v", req.Stack, err)
	}
	return id
}

// Policy approve: a file edited on disk is found by the drift check, which
// names the resource and the property; Re-apply git restores it, verified,
// without a new resource; a second edit, accepted, is left alone. Both are
// in the audit as drift records.
func TestDriftApproveReappliesOrAccepts(t *testing.T) {
	const branch, name = "e2e-drift-approve", "site-drift"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: name, Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Drift: config.DriftApprove, Approvers: []string{"bob"},
		Verify: []config.Check{{Command: []string{"./check.sh"}}, {NoChanges: true}},
	})
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	ctx := context.Background()

	// No deployment yet: nothing to drift from.
	id := driftOf(t, c, cfg, starter.DriftRequest{Stack: name, By: "carol"})
	if run := waitState(t, c, id, time.Minute, contract.StateNoOp, contract.StateFailed); run.State != contract.StateNoOp {
		t.Fatalf("drift check before any deployment ended %s: %s", run.State, run.Error)
	}

	good := deploy(t, c, remote, branch, "stacks/site", out, "v2")
	fileIs(t, out, "v2")
	id = driftOf(t, c, cfg, starter.DriftRequest{Stack: name, By: "carol"})
	if run := waitState(t, c, id, time.Minute, contract.StateDriftNone, contract.StateFailed); run.State != contract.StateDriftNone {
		t.Fatalf("drift check of an untouched stack ended %s: %s", run.State, run.Error)
	}

	tamper(t, out, "hotfix")
	id = driftOf(t, c, cfg, starter.DriftRequest{Stack: name, By: "carol"})
	run := waitState(t, c, id, time.Minute, contract.StateAwaitingApproval, contract.StateFailed)
	if run.State != contract.StateAwaitingApproval {
		t.Fatalf("drift check ended %s: %s", run.State, run.Error)
	}
	d := run.Status.Drift
	if d == nil || d.Plan.Update != 1 || len(d.Resources) != 1 || !strings.HasSuffix(d.Resources[0].URN, "changeops:index:File::page") ||
		d.Resources[0].Op != "update" || !slices.Contains(d.Resources[0].Properties, "content") {
		t.Fatalf("drift found = %+v; want the page named, to update its content", d)
	}
	if d.Plan.PulumiVersion != pulumienv.PulumiVersion {
		t.Errorf("the drift plan records pulumi %q, want %s", d.Plan.PulumiVersion, pulumienv.PulumiVersion)
	}
	if run.Commit != good || !slices.Equal(run.Status.Approval.Approvers, []string{"bob"}) {
		t.Fatalf("drift run compares with %s and asks %v; want %s and bob", run.Commit, run.Status.Approval.Approvers, good)
	}
	fileIs(t, out, "hotfix") // nothing changed before the decision
	if _, err := starter.Decide(ctx, c, id, signedBy("mallory", true, "")); err == nil ||
		!strings.Contains(err.Error(), "mallory may not decide the drift check of stack "+name) {
		t.Fatalf("decision by mallory: %v; want a refusal naming the drift check", err)
	}
	if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "")); err != nil {
		t.Fatalf("re-apply by bob: %v", err)
	}
	run = waitState(t, c, id, 2*time.Minute, contract.StateDriftHealed, contract.StateFailed, contract.StateDriftFound)
	if run.State != contract.StateDriftHealed {
		t.Fatalf("re-apply ended %s: %s", run.State, run.Error)
	}
	fileIs(t, out, "v2")
	recordHistory(t, c, id, "drift_reapplied.json")
	if n := resourcesOfType(t, cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Fatalf("after the re-apply the state holds %d files, want 1", n)
	}
	if v := run.Status.Verifications; len(v) != 1 || !v[0].Passed {
		t.Fatalf("verifications after re-apply = %+v, want one passed round", v)
	}

	tamper(t, out, "hotfix 2")
	accepted := driftOf(t, c, cfg, starter.DriftRequest{Stack: name, By: "carol"})
	waitState(t, c, accepted, time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(ctx, c, accepted, signedBy("bob", false, "hotfix stays")); err != nil {
		t.Fatalf("accept by bob: %v", err)
	}
	waitState(t, c, accepted, time.Minute, contract.StateDriftAccepted)
	recordHistory(t, c, accepted, "drift_accepted.json")
	fileIs(t, out, "hotfix 2")

	// On record: the audit lists the drift runs, what drifted and who decided.
	waitFor(t, 10*time.Second, "drift records in the audit", func() (bool, string) {
		recs, err := starter.Audit(ctx, c, starter.Filter{Stack: name, Kind: starter.KindDrift})
		if err != nil {
			return false, err.Error()
		}
		byID := map[string]starter.Record{}
		for _, r := range recs {
			byID[r.ID] = r
		}
		h, a := byID[id], byID[accepted]
		ok := h.Kind == starter.KindDrift && h.State == contract.StateDriftHealed && h.Approver == "bob" && len(h.Drifted) == 1 &&
			strings.Contains(h.Drifted[0], "changeops:index:File::page (content") && len(h.Updates) == 1 &&
			a.State == contract.StateDriftAccepted && a.Comment == "hotfix stays" && a.Commit == good
		return ok, "healed " + h.State + ", accepted " + a.State
	})
}

// Policy heal re-applies without a click, started from the CLI; policy
// notify only tells; and a drift check waits while a change holds its
// stack, then runs.
func TestDriftHealNotifyAndQueue(t *testing.T) {
	const branch = "e2e-drift-heal"
	remote := gittest.New(t, branch)
	dir := t.TempDir()
	healed, noted := filepath.Join(dir, "healed.txt"), filepath.Join(dir, "noted.txt")
	files := siteProject("stacks/heal", healed, "v1")
	for k, v := range siteProject("stacks/note", noted, "v1") {
		files[k] = v
	}
	remote.Commit("Add two stacks", files)
	cfg := testConfig(t, remote.Bare, branch,
		config.Stack{Name: "drift-heal", Path: "stacks/heal", Stack: "test", Approval: config.ApprovalManual, Approvers: []string{"bob"},
			Drift: config.DriftHeal, Verify: []config.Check{{Command: []string{"./check.sh"}}}},
		config.Stack{Name: "drift-note", Path: "stacks/note", Stack: "test", Approval: config.ApprovalAuto, Drift: config.DriftNotify})
	c := startWorker(t, cfg)
	waitWatching(t, c, branch)
	deploy(t, c, remote, branch, "stacks/heal", healed, "v2")
	deploy(t, c, remote, branch, "stacks/note", noted, "v2")
	tamper(t, healed, "edited")
	tamper(t, noted, "edited")

	// notify: found, reported, left alone.
	id := driftOf(t, c, cfg, starter.DriftRequest{Stack: "drift-note"})
	run := waitState(t, c, id, time.Minute, contract.StateDriftFound, contract.StateFailed)
	if run.State != contract.StateDriftFound || run.Status.Decision != nil || len(run.Status.Applies) != 0 ||
		!strings.Contains(run.Error+run.Detail, "policy notify") {
		t.Fatalf("notify policy: %s, decision %+v, applies %d, detail %q", run.State, run.Status.Decision, len(run.Status.Applies), run.Detail)
	}
	fileIs(t, noted, "edited")

	// heal, through the CLI: back to git without anyone deciding.
	code, stdout, stderr := changeopsWith(t, cfg, "drift", "drift-heal", "--as", "carol")
	if code != 0 || !strings.Contains(stdout, "started") {
		t.Fatalf("changeops drift drift-heal = %d, %q, %q", code, stdout, stderr)
	}
	id = strings.Fields(stdout)[0]
	run = waitState(t, c, id, 2*time.Minute, contract.StateDriftHealed, contract.StateFailed, contract.StateDriftFound)
	if run.State != contract.StateDriftHealed || run.Status.Decision == nil || !run.Status.Decision.Auto {
		t.Fatalf("heal policy ended %s (%s), decision %+v", run.State, run.Error, run.Status.Decision)
	}
	fileIs(t, healed, "v2")
	recordHistory(t, c, id, "drift_healed.json")

	// A change holds drift-heal while it waits for approval; a drift
	// check of the stack waits in its queue, and runs once the change ends.
	sha := remote.Commit("Serve v3", map[string]string{"stacks/heal/Pulumi.test.yaml": "config:\n  site:outFile: " + healed + "\n  site:content: v3\n"})
	change := contract.ChangeWorkflowID(branch, sha)
	waitState(t, c, change, time.Minute, contract.StateAwaitingApproval)
	waiting := driftOf(t, c, cfg, starter.DriftRequest{Stack: "drift-heal"})
	waitFor(t, 30*time.Second, "the drift check waiting in the queue of drift-heal", func() (bool, string) {
		v, err := c.QueryWorkflow(context.Background(), contract.QueueID("drift-heal"), "", contract.QueueStatusQuery)
		if err != nil {
			return false, err.Error()
		}
		var q contract.QueueState
		if err := v.Get(&q); err != nil {
			return false, err.Error()
		}
		for _, w := range q.Waiting {
			if w.RunID == waiting {
				return q.Holder != nil && q.Holder.RunID == change, "waiting behind " + q.Holder.RunID
			}
		}
		return false, "not in the queue yet"
	})
	if r, err := starter.Status(context.Background(), c, waiting); err != nil || r.State != contract.StateQueued {
		t.Fatalf("drift check while the change holds the stack: %+v, %v; want queued", r.State, err)
	}
	if _, err := starter.Decide(context.Background(), c, change, signedBy("bob", true, "")); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, change, 2*time.Minute, contract.StateSucceeded)
	run = waitState(t, c, waiting, time.Minute, contract.StateDriftNone, contract.StateFailed, contract.StateDriftHealed)
	if run.State != contract.StateDriftNone || run.Commit != sha {
		t.Fatalf("drift check after the change: %s at %s (%s); want drift-none at %s", run.State, run.Commit, run.Error, sha)
	}
	recordHistory(t, c, waiting, "drift_none_after_queue.json")
}

// A stack's drift_interval becomes a Temporal Schedule that starts drift
// runs; setting it to 0 deletes the schedule at the next start-up.
func TestDriftSchedule(t *testing.T) {
	const branch, name = "e2e-drift-schedule", "site-scheduled"
	remote := gittest.New(t, branch)
	remote.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "site.txt"), "v1"))
	every := config.Duration(10 * time.Second)
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: name, Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto, DriftInterval: &every,
	})
	w := startWorkerFull(t, cfg)
	c := w.Client()
	ctx := context.Background()
	h := c.ScheduleClient().GetHandle(ctx, contract.DriftScheduleID(name))
	desc, err := h.Describe(ctx)
	if err != nil {
		t.Fatalf("drift schedule of %s: %v", name, err)
	}
	if iv := desc.Schedule.Spec.Intervals; len(iv) != 1 || iv[0].Every != 10*time.Second {
		t.Fatalf("schedule intervals = %+v, want every 10s", iv)
	}
	waitFor(t, 40*time.Second, "a scheduled drift run", func() (bool, string) {
		runs, err := starter.List(ctx, c, starter.Filter{Stack: name, Kind: starter.KindDrift})
		if err != nil {
			return false, err.Error()
		}
		for _, r := range runs {
			if strings.HasPrefix(r.ID, contract.DriftScheduleID(name)+"-") && r.State == contract.StateNoOp {
				return true, ""
			}
		}
		return false, "no finished scheduled run yet"
	})

	w.Stop()
	off := config.Duration(0)
	cfg.Stacks[0].DriftInterval = &off
	c = startWorker(t, cfg)
	_, err = c.ScheduleClient().GetHandle(ctx, contract.DriftScheduleID(name)).Describe(ctx)
	var notFound *serviceerror.NotFound
	if !errors.As(err, &notFound) {
		t.Fatalf("after drift_interval 0 the schedule is still there (describe: %v)", err)
	}
}

// changeopsWith runs the CLI with cfg written to a file and the secrets
// it names in its environment.
func changeopsWith(t *testing.T, cfg *config.Config, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	env := map[string]string{cfg.Pulumi.PassphraseEnv: cfg.Secrets.PulumiPassphrase}
	var out, errOut bytes.Buffer
	code = cmd.Main(context.Background(), append(args, "--config", writeConfig(t, cfg), "--address", temporalURL), cmd.Env{
		Getenv: func(k string) string { return env[k] },
		Stdout: &out, Stderr: &errOut, Tools: tools,
	})
	return code, out.String(), errOut.String()
}
