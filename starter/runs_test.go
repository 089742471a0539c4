package starter

import (
	"testing"
	"time"
)

// The filters become one visibility query; user input is quoted, and the
// task queue keeps one deployment's runs apart from another's in the same
// namespace.
func TestFilterQuery(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "WorkflowType IN ('ChangeWorkflow', 'DriftWorkflow')"},
		{Filter{Kind: KindChange, TaskQueue: "changeops"}, "WorkflowType = 'ChangeWorkflow' AND TaskQueue = 'changeops'"},
		{Filter{Kind: KindDrift, Stack: "web's", Since: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)},
			`WorkflowType = 'DriftWorkflow' AND ChangeStacks = 'web\'s' AND StartTime >= '2026-12-02T10:00:00Z'`},
	} {
		if got := c.f.query(); got != c.want {
			t.Errorf("%+v: query %q, want %q", c.f, got, c.want)
		}
	}
}
