package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/testkit/gittest"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/worker"
)

// Upgrading changeops under Worker Deployments, on the real server: build
// A is the first worker of a fresh deployment and makes itself current;
// runs 1 and 2 start on A, run 1 holding the stack while it waits for an
// approval. Build B (the same code and config, another build ID) starts
// beside A and is not current until `changeops deployment set-current B`;
// then the watcher moves to B and run 3 starts there. Approving runs 1 and
// 2 completes them on A: their decisions, applies and verifications run
// on A's worker, whose log alone holds their steps, and Temporal records
// A as their build. A drains and stops; the stack's queue, having moved to
// B, grants run 3, which deploys on B. No commit is lost across the
// switch: every commit has its run and the watcher saw the last one.
func TestUpgradeKeepsRunsOnTheirBuild(t *testing.T) {
	const branch, deployment, stackName = "e2e-upgrade", "e2e-upgrade", "site-upgrade"
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	serve := func(content string) string {
		return remote.Commit("Serve "+content, map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: " + content + "\n"})
	}
	cfgA := testConfig(t, remote.Bare, branch, config.Stack{
		Name: stackName, Path: "stacks/site", Stack: "test",
		Approval: config.ApprovalManual, Approvers: []string{"bob"},
		Verify: []config.Check{{NoChanges: true}},
	})
	// A deployment of its own: the suite's other workers are build e2e
	// of the default one.
	cfgA.Temporal.DeploymentName = deployment
	cfgA.Temporal.BuildID = "build-a"
	// B is A's configuration, data folder and Pulumi state, as a new
	// release deployed beside the old one would share them.
	cfgB := *cfgA
	cfgB.Temporal.BuildID = "build-b"
	ctx := context.Background()

	code, stdout, stderr := changeops(t, "setup", "--config", writeConfig(t, cfgA))
	if code != 0 || !strings.Contains(stdout, "worker deployment "+deployment+": no build is current yet; the first worker to start makes its build current") {
		t.Fatalf("changeops setup = %d, %q, %q; want the deployment's state", code, stdout, stderr)
	}
	logA := &syncBuffer{}
	wA := startWorkerLogging(t, cfgA, logA)
	c := wA.Client()
	if st := describeDeployment(t, deployment); st.Current != "build-a" {
		t.Fatalf("after the first worker of a fresh deployment started, current = %q, want build-a", st.Current)
	}
	waitWatching(t, c, branch)

	sha1 := serve("v2")
	id1 := contract.ChangeWorkflowID(branch, sha1)
	waitState(t, c, id1, time.Minute, contract.StateAwaitingApproval)
	sha2 := serve("v3")
	id2 := contract.ChangeWorkflowID(branch, sha2)
	waitState(t, c, id2, time.Minute, contract.StateQueued)

	// B starts beside A and takes nothing: A stays current.
	logB := &syncBuffer{}
	wB := startWorkerLogging(t, &cfgB, logB)
	if body := get(t, "http://"+wB.Addr()+"/readyz"); !strings.Contains(body, "ready\n") ||
		!strings.Contains(body, "deployment: "+deployment+"\n") || !strings.Contains(body, "build: build-b\n") {
		t.Errorf("/readyz of B = %q, want ready, its deployment and its build", body)
	}
	if !strings.Contains(logB.String(), "this build is not the deployment's current build") {
		t.Errorf("B's log does not say that B is not current:\n%s", lastLines(logB.String(), 20))
	}
	st := describeDeployment(t, deployment)
	if st.Current != "build-a" || !slices.ContainsFunc(st.Builds, func(b worker.BuildState) bool { return b.BuildID == "build-b" }) {
		t.Fatalf("with B started: %+v, want build-a current and build-b listed", st)
	}
	waitFor(t, 30*time.Second, "runs 1 and 2 listed as pinned to build-a", func() (bool, string) {
		st := describeDeployment(t, deployment)
		a := buildState(st, "build-a")
		return a.Pinned == 2 && slices.Contains(a.PinnedRuns, id1) && slices.Contains(a.PinnedRuns, id2), jsonOf(st)
	})

	code, stdout, stderr = changeops(t, "deployment", "set-current", "build-b", "--deployment", deployment)
	if code != 0 || !strings.Contains(stdout, "build build-b is current in worker deployment "+deployment+" (was build build-a)") {
		t.Fatalf("changeops deployment set-current build-b = %d, %q, %q", code, stdout, stderr)
	}
	// The watcher follows the current build at its next task (it polls
	// every second); a run it starts from then on is B's.
	waitFor(t, 30*time.Second, "the watcher on build-b", func() (bool, string) {
		b, behaviour := runsOn(t, c, contract.WatcherWorkflowID(branch))
		return b == "build-b" && behaviour == "auto-upgrade", b + " " + behaviour
	})
	sha3 := serve("v4")
	id3 := contract.ChangeWorkflowID(branch, sha3)
	waitState(t, c, id3, time.Minute, contract.StateQueued)

	// Runs 1 and 2 finish on A, decided after B became current.
	for _, id := range []string{id1, id2} {
		waitState(t, c, id, time.Minute, contract.StateAwaitingApproval)
		if _, err := starter.Decide(ctx, c, id, signedBy("bob", true, "")); err != nil {
			t.Fatalf("approve %s: %v", id, err)
		}
		if run := waitState(t, c, id, 2*time.Minute, contract.StateSucceeded, contract.StateFailed); run.State != contract.StateSucceeded {
			t.Fatalf("run %s ended %s: %s", id, run.State, run.Error)
		}
	}
	for _, id := range []string{id1, id2} {
		run, err := starter.Status(ctx, c, id)
		if err != nil {
			t.Fatal(err)
		}
		if run.Build != "build-a" || run.Deployment != deployment || run.Versioning != "pinned" {
			t.Errorf("run %s: build %q of %q (%s), want build-a of %s (pinned)", id, run.Build, run.Deployment, run.Versioning, deployment)
		}
		if steps := runSteps(logA.String(), id); !slices.Contains(steps, "applied") || !slices.Contains(steps, "succeeded") {
			t.Errorf("A's log has steps %v of run %s, want its apply and success", steps, id)
		}
		if steps := runSteps(logB.String(), id); len(steps) > 0 {
			t.Errorf("B ran steps %v of run %s, which is pinned to A", steps, id)
		}
	}
	code, stdout, stderr = changeops(t, "status", sha1[:8])
	if code != 0 || !strings.Contains(stdout, "build-a of deployment "+deployment+" (pinned)") {
		t.Errorf("changeops status %s = %d, %q, %q; want its build", sha1[:8], code, stdout, stderr)
	}

	// A has drained: nothing is pinned to it any more, and it stops.
	waitFor(t, 30*time.Second, "nothing pinned to build-a", func() (bool, string) {
		st := describeDeployment(t, deployment)
		return buildState(st, "build-a").Pinned == 0 && buildState(st, "build-b").Pinned == 1, jsonOf(st)
	})
	wA.Stop()
	c = wB.Client()

	// The queue moved to B with the releases of runs 1 and 2, and grants
	// run 3 there.
	waitState(t, c, id3, time.Minute, contract.StateAwaitingApproval)
	if _, err := starter.Decide(ctx, c, id3, signedBy("bob", true, "")); err != nil {
		t.Fatalf("approve %s: %v", id3, err)
	}
	run := waitState(t, c, id3, 2*time.Minute, contract.StateSucceeded, contract.StateFailed)
	if run.State != contract.StateSucceeded || run.Build != "build-b" || run.Versioning != "pinned" {
		t.Fatalf("run 3 ended %s on build %q (%s): %s; want succeeded on build-b (pinned)", run.State, run.Build, run.Versioning, run.Error)
	}
	if steps := runSteps(logB.String(), id3); !slices.Contains(steps, "applied") {
		t.Errorf("B's log has steps %v of run 3, want its apply", steps)
	}
	if b, behaviour := runsOn(t, c, contract.QueueID(stackName)); b != "build-b" || behaviour != "auto-upgrade" {
		t.Errorf("the stack's queue runs on %q (%s), want build-b (auto-upgrade)", b, behaviour)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v4" {
		t.Errorf("deployed file = %q, %v; want v4, the last commit's", got, err)
	}
	if w := watcherStatus(t, c, branch); w.LastSeen != sha3 {
		t.Errorf("watcher last saw %s, want the head %s", w.LastSeen, sha3)
	}
	runs, err := starter.List(ctx, c, starter.Filter{Stack: stackName})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if slices.Sort(ids); !slices.Equal(ids, sortedOf(id1, id2, id3)) {
		t.Errorf("runs of the stack: %v, want one per commit: %v", ids, sortedOf(id1, id2, id3))
	}
}

// describeDeployment is `changeops deployment describe --json`.
func describeDeployment(t *testing.T, name string) worker.DeploymentState {
	t.Helper()
	code, stdout, stderr := changeops(t, "deployment", "describe", "--deployment", name, "--json")
	var st worker.DeploymentState
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil {
		t.Fatalf("changeops deployment describe = %d, %q, %q", code, stdout, stderr)
	}
	return st
}

func buildState(st worker.DeploymentState, build string) worker.BuildState {
	for _, b := range st.Builds {
		if b.BuildID == build {
			return b
		}
	}
	return worker.BuildState{Pinned: -1}
}

// runsOn is the build a workflow runs on and how it follows builds, as
// Temporal records them.
func runsOn(t *testing.T, c client.Client, id string) (build, behaviour string) {
	t.Helper()
	run, err := starter.Status(context.Background(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	return run.Build, run.Versioning
}

// runSteps are the steps of a run a worker's console notifier logged.
func runSteps(log, run string) []string {
	var steps []string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg   string `json:"msg"`
			Run   string `json:"run"`
			State string `json:"state"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Run == run && line.State != "" {
			steps = append(steps, line.Msg)
		}
	}
	return steps
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedOf(s ...string) []string {
	slices.Sort(s)
	return s
}
