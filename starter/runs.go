package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/workflows"
)

// Run is one change run as `list` and `status --json` print it.
type Run struct {
	ID string `json:"id"`
	// Kind is "change" (a merged commit's run) or "drift" (a drift check).
	Kind         string   `json:"kind"`
	Commit       string   `json:"commit"`
	Stacks       []string `json:"stacks"`
	State        string   `json:"state"`
	Approver     string   `json:"approver"`
	RevertCommit string   `json:"revert_commit"`
	Author       string   `json:"author,omitempty"`
	Subject      string   `json:"subject,omitempty"`
	Detail       string   `json:"detail,omitempty"`
	Error        string   `json:"error,omitempty"`
	// Retrying names each activity of the run that Temporal is retrying,
	// with its attempt and the last failure: an outage (a remote, the
	// Pulumi CLI, a full disk) that the run is waiting out.
	Retrying []string `json:"retrying,omitempty"`
	// Status is the full query answer when the run could be queried.
	Status *workflows.Status `json:"status,omitempty"`
	// Deployment and Build are the Worker Deployment version that ran the
	// run's last workflow task, or the one an operator moved it to; a
	// change or drift run is pinned to the build that started it. Empty
	// for a run of unversioned workers.
	Deployment string `json:"deployment,omitempty"`
	Build      string `json:"build,omitempty"`
	// Versioning is how the run follows builds: pinned or auto-upgrade
	// (empty: unversioned); "(moved)" is added when an operator moved it.
	Versioning string `json:"versioning,omitempty"`
	// Frozen are the freezes on the run's stacks now, for a run that has
	// not begun to apply (status only, see Holding): they will hold its
	// apply.
	Frozen []Frozen `json:"frozen,omitempty"`
}

// Filter narrows List.
type Filter struct {
	Stack        string
	State        string
	CommitPrefix string
	// Author matches the commit author's email (ChangeAuthor).
	Author string
	// Since keeps runs started at or after it; zero keeps all.
	Since time.Time
	// Kind keeps only change runs ("change") or drift runs ("drift");
	// empty keeps both.
	Kind string
	// TaskQueue keeps the runs of one task queue (one deployment of
	// changeops); empty keeps every one in the namespace.
	TaskQueue string
	Limit     int
}

// Kinds of run, as Run.Kind and Filter.Kind name them.
const (
	KindChange = "change"
	KindDrift  = "drift"
	// KindFreeze marks an audit record of a freeze, not a run.
	KindFreeze = "freeze"
)

func (f Filter) query() string {
	var q []string
	switch f.Kind {
	case KindChange:
		q = append(q, fmt.Sprintf("WorkflowType = '%s'", contract.ChangeWorkflowName))
	case KindDrift:
		q = append(q, fmt.Sprintf("WorkflowType = '%s'", contract.DriftWorkflowName))
	default:
		q = append(q, fmt.Sprintf("WorkflowType IN ('%s', '%s')", contract.ChangeWorkflowName, contract.DriftWorkflowName))
	}
	if f.TaskQueue != "" {
		q = append(q, fmt.Sprintf("TaskQueue = %s", contract.Quote(f.TaskQueue)))
	}
	if f.Stack != "" {
		q = append(q, fmt.Sprintf("ChangeStacks = %s", contract.Quote(f.Stack)))
	}
	if f.State != "" {
		q = append(q, fmt.Sprintf("ChangeState = %s", contract.Quote(f.State)))
	}
	if f.CommitPrefix != "" {
		q = append(q, fmt.Sprintf("ChangeCommit STARTS_WITH %s", contract.Quote(f.CommitPrefix)))
	}
	if f.Author != "" {
		q = append(q, fmt.Sprintf("ChangeAuthor = %s", contract.Quote(f.Author)))
	}
	if !f.Since.IsZero() {
		q = append(q, fmt.Sprintf("StartTime >= '%s'", f.Since.UTC().Format(time.RFC3339)))
	}
	return strings.Join(q, " AND ")
}

// List returns change runs, newest first, from Temporal visibility.
func List(ctx context.Context, c client.Client, f Filter) ([]Run, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.Kind != "" && f.Kind != KindChange && f.Kind != KindDrift {
		return nil, fmt.Errorf("kind %q: use change or drift (or leave it out for both)", f.Kind)
	}
	var out []Run
	var token []byte
	for len(out) < f.Limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         f.query(),
			PageSize:      int32(min(f.Limit, 100)),
			NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list change runs (%s): %w", f.query(), err)
		}
		for _, e := range resp.GetExecutions() {
			r := runFromAttributes(e.GetExecution().GetWorkflowId(), e.GetSearchAttributes().GetIndexedFields())
			r.Kind = kindOf(e.GetType().GetName())
			out = append(out, r)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func runFromAttributes(id string, fields map[string]*commonpb.Payload) Run {
	r := Run{ID: id, Stacks: []string{}}
	decode := func(name string, into any) {
		if p, ok := fields[name]; ok {
			_ = converter.GetDefaultDataConverter().FromPayload(p, into)
		}
	}
	decode("ChangeCommit", &r.Commit)
	decode("ChangeStacks", &r.Stacks)
	decode("ChangeState", &r.State)
	decode("ChangeApprover", &r.Approver)
	decode("ChangeAuthor", &r.Author)
	if r.Stacks == nil {
		r.Stacks = []string{}
	}
	return r
}

func kindOf(workflowType string) string {
	if workflowType == contract.DriftWorkflowName {
		return KindDrift
	}
	return KindChange
}

// Status asks a run for its full status; a run whose worker is gone is still
// described from its search attributes.
func Status(ctx context.Context, c client.Client, id string) (Run, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return Run{}, fmt.Errorf("no change run %s", id)
	}
	if err != nil {
		return Run{}, fmt.Errorf("describe %s: %w", id, err)
	}
	run := runFromAttributes(id, desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields())
	run.Kind = kindOf(desc.GetWorkflowExecutionInfo().GetType().GetName())
	run.Deployment, run.Build, run.Versioning = versionOf(desc.GetWorkflowExecutionInfo().GetVersioningInfo())
	for _, pa := range desc.GetPendingActivities() {
		if f := pa.GetLastFailure(); pa.GetAttempt() > 1 && f != nil {
			run.Retrying = append(run.Retrying, fmt.Sprintf("%s (attempt %d): %s", pa.GetActivityType().GetName(), pa.GetAttempt(), f.GetMessage()))
		}
	}
	resp, err := c.QueryWorkflow(ctx, id, "", contract.StatusQuery)
	if err != nil {
		run.Detail = "status query unavailable (is a worker running?): " + err.Error()
		return run, nil
	}
	var st workflows.Status
	if err := resp.Get(&st); err != nil {
		return run, fmt.Errorf("decode status of %s: %w", id, err)
	}
	run.Status = &st
	run.Commit = st.Commit.SHA
	run.Stacks = append([]string{}, st.Stacks...)
	run.State = st.State
	run.RevertCommit = st.RevertCommit
	run.Author = st.Commit.AuthorEmail
	run.Subject = st.Commit.Subject
	run.Detail = st.Detail
	run.Error = st.Error
	if st.Decision != nil {
		run.Approver = st.Decision.User
	}
	return run, nil
}

// versionOf reads which build runs an execution: an operator's pinned
// override (temporal workflow update-options) wins over the version that
// completed its last workflow task.
func versionOf(vi *workflowpb.WorkflowExecutionVersioningInfo) (deployment, build, behavior string) {
	if vi == nil {
		return "", "", ""
	}
	v := vi.GetDeploymentVersion()
	switch vi.GetBehavior() {
	case enumspb.VERSIONING_BEHAVIOR_PINNED:
		behavior = "pinned"
	case enumspb.VERSIONING_BEHAVIOR_AUTO_UPGRADE:
		behavior = "auto-upgrade"
	}
	if o := vi.GetVersioningOverride(); o != nil {
		if p := o.GetPinned().GetVersion(); p != nil {
			v, behavior = p, "pinned"
		} else if o.GetAutoUpgrade() {
			behavior = "auto-upgrade"
		}
		behavior += " (moved)"
	}
	return v.GetDeploymentName(), v.GetBuildId(), behavior
}
