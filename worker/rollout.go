package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/contract"
)

// What an operator does to roll a build of changeops out (`changeops
// deployment`, docs/upgrading.md): see the deployment's
// builds and what still runs on each, make a build current, ramp one.

// DeploymentState is a Worker Deployment as `changeops deployment
// describe` shows it.
type DeploymentState struct {
	Name string `json:"deployment"`
	// Current is the build new runs go to; empty: unversioned workers.
	Current string `json:"current"`
	// Ramping takes RampPercent of new runs (and of the auto-upgrading
	// workflows' tasks) instead of Current.
	Ramping     string       `json:"ramping,omitempty"`
	RampPercent float32      `json:"ramp_percent,omitempty"`
	Builds      []BuildState `json:"builds"`
}

// BuildState is one build (version) of a deployment.
type BuildState struct {
	BuildID string    `json:"build_id"`
	Created time.Time `json:"created"`
	// Drainage is Temporal's verdict for a build that is neither current
	// nor ramping: draining (runs are pinned to it) or drained (none are;
	// its workers may stop). Temporal refreshes it every few minutes;
	// Pinned is read now.
	Drainage string `json:"drainage,omitempty"`
	// Pinned counts the open runs pinned to the build; PinnedRuns names
	// the first of them.
	Pinned     int64    `json:"pinned"`
	PinnedRuns []string `json:"pinned_runs,omitempty"`
}

// maxPinnedShown bounds the run IDs listed per build.
const maxPinnedShown = 10

// notFoundFor is how long a deployment that is not found is asked for
// again: Temporal keeps a deployment in a workflow of its own, which
// answers "not found" for a moment while it continues as new, so a
// deployment described a second ago can seem to be gone.
const notFoundFor = 3 * time.Second

// describe describes the deployment, asking again while it is not found
// for up to notFoundFor; other errors are returned at once.
func describe(ctx context.Context, h client.WorkerDeploymentHandle) (client.WorkerDeploymentDescribeResponse, error) {
	return backoff.Retry(ctx, func() (client.WorkerDeploymentDescribeResponse, error) {
		d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			return d, backoff.Permanent(err)
		}
		return d, err
	}, backoff.WithBackOff(backoff.NewConstantBackOff(200*time.Millisecond)), backoff.WithMaxElapsedTime(notFoundFor))
}

// DescribeDeployment reads a deployment's routing and builds, and the runs
// pinned to each build, newest build first.
func DescribeDeployment(ctx context.Context, c client.Client, namespace, name string) (DeploymentState, error) {
	d, err := describe(ctx, c.WorkerDeploymentClient().GetHandle(name))
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return DeploymentState{}, fmt.Errorf("no worker deployment %s in namespace %s: it is created when its first versioned worker polls (check temporal.deployment_name): %w", name, namespace, err)
	}
	if err != nil {
		return DeploymentState{}, fmt.Errorf("describe worker deployment %s: %w", name, err)
	}
	st := DeploymentState{Name: name, Builds: []BuildState{}}
	rc := d.Info.RoutingConfig
	if rc.CurrentVersion != nil {
		st.Current = rc.CurrentVersion.BuildID
	}
	if rc.RampingVersion != nil && rc.RampingVersionPercentage > 0 {
		st.Ramping, st.RampPercent = rc.RampingVersion.BuildID, rc.RampingVersionPercentage
	}
	for _, v := range d.Info.VersionSummaries {
		b := BuildState{BuildID: v.Version.BuildID, Created: v.CreateTime}
		switch v.DrainageStatus {
		case client.WorkerDeploymentVersionDrainageStatusDraining:
			b.Drainage = "draining"
		case client.WorkerDeploymentVersionDrainageStatusDrained:
			b.Drainage = "drained"
		}
		if b.Pinned, b.PinnedRuns, err = pinnedRuns(ctx, c, namespace, name, b.BuildID); err != nil {
			return st, err
		}
		st.Builds = append(st.Builds, b)
	}
	slices.SortFunc(st.Builds, func(a, b BuildState) int { return b.Created.Compare(a.Created) })
	return st, nil
}

// pinnedRuns counts the open executions pinned to a build, from
// visibility. Servers write the version as "name.build" (older) or
// "name:build"; both are asked for.
func pinnedRuns(ctx context.Context, c client.Client, namespace, name, build string) (int64, []string, error) {
	q := fmt.Sprintf("TemporalWorkerDeploymentVersion IN (%s, %s) AND TemporalWorkflowVersioningBehavior = 'Pinned' AND ExecutionStatus = 'Running'",
		contract.Quote(name+"."+build), contract.Quote(name+":"+build))
	n, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace, Query: q})
	if err != nil {
		return 0, nil, fmt.Errorf("count runs pinned to build %s (%s): %w", build, q, err)
	}
	if n.GetCount() == 0 {
		return 0, nil, nil
	}
	list, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: q, PageSize: maxPinnedShown})
	if err != nil {
		return 0, nil, fmt.Errorf("list runs pinned to build %s (%s): %w", build, q, err)
	}
	var ids []string
	for _, e := range list.GetExecutions() {
		ids = append(ids, e.GetExecution().GetWorkflowId())
	}
	return n.GetCount(), ids, nil
}

// SetCurrent makes build the deployment's current build: new runs, and the
// auto-upgrading watchers and queues at their next task, go to it; runs
// pinned to other builds stay where they are. An empty build routes to
// unversioned workers (going back to temporal.versioning: false). Temporal
// refuses a build that has never polled (a typo, a build not started
// yet) and one that does not poll every task queue the current build
// polls. It returns the build that was current.
func SetCurrent(ctx context.Context, c client.Client, name, build string) (string, error) {
	h := c.WorkerDeploymentClient().GetHandle(name)
	d, err := describe(ctx, h)
	if err != nil {
		return "", fmt.Errorf("describe worker deployment %s: %w", name, err)
	}
	var was string
	if v := d.Info.RoutingConfig.CurrentVersion; v != nil {
		was = v.BuildID
	}
	if err := knownBuild(d.Info, build); err != nil {
		return was, err
	}
	_, err = h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{BuildID: build, ConflictToken: d.ConflictToken})
	if err != nil {
		return was, fmt.Errorf("make build %q current in worker deployment %s: %w", build, name, err)
	}
	return was, nil
}

// Ramp sends percent of new runs (and of the auto-upgrading workflows'
// tasks) to build instead of the current build; 0 stops the ramp. Runs
// are pinned to whichever build started them.
func Ramp(ctx context.Context, c client.Client, name, build string, percent float32) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("ramp %v%%: give a percentage from 0 (stop ramping) to 100", percent)
	}
	h := c.WorkerDeploymentClient().GetHandle(name)
	d, err := describe(ctx, h)
	if err != nil {
		return fmt.Errorf("describe worker deployment %s: %w", name, err)
	}
	if err := knownBuild(d.Info, build); err != nil {
		return err
	}
	_, err = h.SetRampingVersion(ctx, client.WorkerDeploymentSetRampingVersionOptions{BuildID: build, Percentage: percent, ConflictToken: d.ConflictToken})
	if err != nil {
		return fmt.Errorf("ramp build %s to %v%% in worker deployment %s: %w", build, percent, name, err)
	}
	return nil
}

// knownBuild refuses a build the deployment has never seen, listing the
// ones it has: Temporal's own refusal does not.
func knownBuild(info client.WorkerDeploymentInfo, build string) error {
	if build == "" {
		return nil
	}
	var known []string
	for _, v := range info.VersionSummaries {
		if v.Version.BuildID == build {
			return nil
		}
		known = append(known, v.Version.BuildID)
	}
	return fmt.Errorf("worker deployment %s has no build %q: start its workers first (builds: %s)", info.Name, build, strings.Join(known, ", "))
}

// CurrentBuild is the deployment's current build ("" for unversioned
// workers); exists is false while no versioned worker has polled it.
func CurrentBuild(ctx context.Context, c client.Client, name string) (build string, exists bool, err error) {
	d, err := describe(ctx, c.WorkerDeploymentClient().GetHandle(name))
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("describe worker deployment %s: %w", name, err)
	}
	if v := d.Info.RoutingConfig.CurrentVersion; v != nil {
		build = v.BuildID
	}
	return build, true, nil
}
