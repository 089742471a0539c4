package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/changeops/changeops/config"
)

// Worker Deployments (Temporal's Worker Versioning): every worker polls
// as a version of temporal.deployment_name, named by its build ID. A new
// run goes to the deployment's current build; a change or drift run stays
// on the build that started it (workflows.Register says which workflow
// does what, and why); docs/upgrading.md is the procedure.

// Deployment is the Worker Deployment version a worker polls as.
type Deployment struct {
	// Name is temporal.deployment_name.
	Name string
	// BuildID names this build in it.
	BuildID string
	// Versioned is temporal.versioning: false polls unversioned (Name
	// and BuildID are then only reported).
	Versioned bool
}

// deploymentOf is the deployment version a worker with t polls as.
func deploymentOf(t config.Temporal) Deployment {
	return Deployment{Name: t.DeploymentName, BuildID: BuildID(t), Versioned: t.Versioned()}
}

// options are the SDK's deployment options for d. The default versioning
// behaviour stays unspecified on purpose: every workflow type declares its
// own, and one registered without would fail the worker's start rather
// than quietly get a behaviour nobody chose.
func (d Deployment) options() sdkworker.DeploymentOptions {
	if !d.Versioned {
		return sdkworker.DeploymentOptions{}
	}
	return sdkworker.DeploymentOptions{
		UseVersioning: true,
		Version:       sdkworker.WorkerDeploymentVersion{DeploymentName: d.Name, BuildID: d.BuildID},
	}
}

// BuildVersion, when set at link time (go build -ldflags "-X
// github.com/changeops/changeops/worker.BuildVersion=v1.4.2"), is the
// build ID of workers whose config sets no temporal.build_id.
var BuildVersion string

// BuildID is this build's ID in the deployment: temporal.build_id, else
// BuildVersion, else the binary's own version (see buildIDOf).
func BuildID(t config.Temporal) string {
	if t.BuildID != "" {
		return t.BuildID
	}
	if BuildVersion != "" {
		return BuildVersion
	}
	info, _ := debug.ReadBuildInfo()
	return buildIDOf(info, executableDigest)
}

// buildIDOf names a build from what Go recorded in the binary: the
// module's version when it was installed at one (go install ...@v1.4.2),
// else the commit it was built from (12 hex digits, as `git log` shows
// them abbreviated), else a digest of the executable. A commit with
// uncommitted changes gets the digest too: two builds of one dirty tree
// are different code, and must never share an ID, since a build ID
// promises that a run pinned to it replays on any worker of that ID.
func buildIDOf(info *debug.BuildInfo, digest func() string) string {
	if info == nil {
		return "exe-" + digest()
	}
	if v := info.Main.Version; v != "" && v != "(devel)" && !strings.Contains(v, "+dirty") {
		return v
	}
	var rev string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return "exe-" + digest()
	case modified:
		return fmt.Sprintf("%.12s-dirty-%.8s", rev, digest())
	}
	return fmt.Sprintf("%.12s", rev)
}

// executableDigest is the first 12 hex digits of the SHA-256 of the
// running binary, or "unknown" when it cannot be read.
func executableDigest() string {
	path, err := os.Executable()
	if err != nil {
		return "unknown"
	}
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// joinTimeout bounds how long a starting worker waits for the server to
// register its version and, on a first start, to make it current.
const joinTimeout = time.Minute

// joinDeployment runs once the worker polls. It waits until the server
// lists the worker's task queue (workflows and activities) in the build's
// version, so that routing is settled before the worker starts anything,
// and returns the deployment's current build ("" for unversioned workers).
//
// On a first start, when no build is current and none is ramping, it makes
// this build current: a fresh install, or the first versioned release
// replacing unversioned workers. Without it, new runs and the runs in
// flight would wait on the unversioned queue that no worker polls any
// more. A deployment that has a current build is left as it is: making a
// later build current is the operator's step (`changeops deployment
// set-current`), taken once it runs beside the old one.
func joinDeployment(ctx context.Context, c client.Client, d Deployment, taskQueue string, logger *slog.Logger) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	h := c.WorkerDeploymentClient().GetHandle(d.Name)
	current, err := backoff.Retry(ctx, func() (string, error) {
		v, err := h.DescribeVersion(ctx, client.WorkerDeploymentDescribeVersionOptions{BuildID: d.BuildID})
		if err != nil {
			return "", retryable(err)
		}
		if missing := missingQueues(v.Info.TaskQueuesInfos, taskQueue); missing != "" {
			return "", fmt.Errorf("build %s does not list the %s task queue %s yet", d.BuildID, missing, taskQueue)
		}
		desc, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
		if err != nil {
			return "", retryable(err)
		}
		rc := desc.Info.RoutingConfig
		if rc.CurrentVersion != nil {
			return rc.CurrentVersion.BuildID, nil
		}
		if rc.RampingVersion != nil && rc.RampingVersionPercentage > 0 {
			// Someone moves the deployment over step by step: theirs to do.
			return "", nil
		}
		if !rc.CurrentVersionChangedTime.IsZero() {
			// No current build, but an operator chose that (set-current
			// --unversioned): a restart must not undo it.
			return "", nil
		}
		// The conflict token makes this a no-op when another worker of
		// the deployment changed it meanwhile; the next round reads it.
		_, err = h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{
			BuildID: d.BuildID, ConflictToken: desc.ConflictToken,
		})
		if err != nil {
			return "", retryable(err)
		}
		logger.Info("made this build current: the worker deployment had no current build (a first start)",
			"deployment", d.Name, "build", d.BuildID)
		return d.BuildID, nil
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 1.5, MaxInterval: 2 * time.Second,
	}), backoff.WithMaxElapsedTime(joinTimeout))
	if err != nil {
		return "", fmt.Errorf("join worker deployment %s as build %s: %w (Worker Deployments need a Temporal server that serves them; set temporal.versioning: false to run unversioned workers)",
			d.Name, d.BuildID, err)
	}
	return current, nil
}

// retryable keeps the errors of a version not registered yet, a
// deployment not created yet and a conflicting change retryable; any
// other (a server without Worker Deployments, no permission) stops.
func retryable(err error) error {
	var notFound *serviceerror.NotFound
	var precondition *serviceerror.FailedPrecondition
	var unavailable *serviceerror.Unavailable
	if errors.As(err, &notFound) || errors.As(err, &precondition) || errors.As(err, &unavailable) {
		return err
	}
	return backoff.Permanent(err)
}

// missingQueues names the kinds of the task queue the version does not
// list yet.
func missingQueues(have []client.WorkerDeploymentTaskQueueInfo, taskQueue string) string {
	var missing []string
	for _, want := range []struct {
		kind string
		t    client.TaskQueueType
	}{{"workflow", client.TaskQueueTypeWorkflow}, {"activity", client.TaskQueueTypeActivity}} {
		if !slices.ContainsFunc(have, func(q client.WorkerDeploymentTaskQueueInfo) bool {
			return q.Name == taskQueue && q.Type == want.t
		}) {
			missing = append(missing, want.kind)
		}
	}
	return strings.Join(missing, " and ")
}

// writeReady writes what /readyz reports beside "ready": the deployment
// and build this worker runs as.
func (w *Worker) writeReady(out io.Writer) {
	if w.deployment.Versioned {
		fmt.Fprintf(out, "deployment: %s\n", w.deployment.Name)
	} else {
		fmt.Fprintln(out, "deployment: none (temporal.versioning: false)")
	}
	fmt.Fprintf(out, "build: %s\n", w.deployment.BuildID)
}
