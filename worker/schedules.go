package worker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/workflows"
)

// driftCatchup is how late a missed drift check may still start (a worker
// or server that was down): later than that, the next interval does it.
const driftCatchup = time.Minute

// ReconcileDriftSchedules makes Temporal's drift schedules match the
// configuration: one per stack with a drift_interval, created or updated in
// place, and those of stacks that no longer have one (or no longer exist)
// deleted. Only schedules that start runs on this task queue are touched,
// so two deployments can share a namespace.
func ReconcileDriftSchedules(ctx context.Context, c client.Client, cfg *config.Config, logger *slog.Logger) error {
	sc := c.ScheduleClient()
	want := map[string]bool{}
	for _, s := range cfg.Stacks {
		every := s.DriftEvery()
		if every == 0 {
			continue
		}
		id := contract.DriftScheduleID(s.Name)
		want[id] = true
		if err := upsertDriftSchedule(ctx, sc, cfg, s, every); err != nil {
			return err
		}
		logger.Debug("drift schedule", "stack", s.Name, "every", every, "policy", s.Drift)
	}
	it, err := sc.List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return fmt.Errorf("list drift schedules: %w", err)
	}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return fmt.Errorf("list drift schedules: %w", err)
		}
		if !strings.HasPrefix(e.ID, "drift/") || want[e.ID] || e.WorkflowType.Name != contract.DriftWorkflowName {
			continue
		}
		h := sc.GetHandle(ctx, e.ID)
		d, err := h.Describe(ctx)
		if err != nil {
			return fmt.Errorf("describe schedule %s: %w", e.ID, err)
		}
		if act, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); !ok || act.TaskQueue != cfg.Temporal.TaskQueue {
			continue // another deployment's
		}
		if err := h.Delete(ctx); err != nil {
			return fmt.Errorf("delete drift schedule %s (its stack has no drift_interval now): %w", e.ID, err)
		}
		logger.Info("drift schedule deleted", "schedule", e.ID)
	}
	return nil
}

func upsertDriftSchedule(ctx context.Context, sc client.ScheduleClient, cfg *config.Config, s config.Stack, every time.Duration) error {
	id := contract.DriftScheduleID(s.Name)
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every, Offset: spread(s.Name, every)}}}
	action := &client.ScheduleWorkflowAction{
		ID:            id,
		Workflow:      contract.DriftWorkflowName,
		Args:          []any{workflows.DriftInput{Stack: s.Name, UIURL: cfg.Temporal.UIURL}},
		TaskQueue:     cfg.Temporal.TaskQueue,
		StaticSummary: "Drift check of stack " + s.Name,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.ChangeStacks.ValueSet([]string{s.Name}),
			contract.ChangeState.ValueSet(contract.StateDriftChecking),
		),
	}
	_, err := sc.Create(ctx, client.ScheduleOptions{
		ID:            id,
		Spec:          spec,
		Action:        action,
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, // a check still waiting for a decision is enough
		CatchupWindow: driftCatchup,
		Note:          "changeops: drift_interval of stack " + s.Name,
	})
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		if err != nil {
			return fmt.Errorf("create drift schedule %s: %w", id, err)
		}
		return nil
	}
	err = sc.GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			sch := in.Description.Schedule
			if old, ok := sch.Action.(*client.ScheduleWorkflowAction); ok && old.TaskQueue != cfg.Temporal.TaskQueue {
				return nil, fmt.Errorf("drift schedule %s starts runs on task queue %q, but temporal.task_queue is %q: use the same task queue, or delete it (temporal schedule delete --schedule-id %s) to move it",
					id, old.TaskQueue, cfg.Temporal.TaskQueue, id)
			}
			sch.Spec = &spec
			sch.Action = action
			if sch.Policy != nil {
				sch.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
				sch.Policy.CatchupWindow = driftCatchup
			}
			return &client.ScheduleUpdate{Schedule: &sch}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update drift schedule %s: %w", id, err)
	}
	return nil
}

// spread offsets a stack's checks within the interval by its name, so that
// many stacks with one interval do not all refresh at the same moment.
func spread(stack string, every time.Duration) time.Duration {
	secs := int64(every / time.Second)
	if secs <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(stack))
	return time.Duration(int64(h.Sum32())%secs) * time.Second
}
