package activities

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/policy"
)

// A requirement's group or people resolve to who counts toward it, by
// name and Slack ID; what the configuration does not know fails closed.
func TestResolveApprovers(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{
		People: []config.Person{{Name: "carol", Slack: []string{"U0CAROL"}}, {Name: "dave"}},
		Groups: []config.Group{{Name: "dba", Members: []string{"U0CAROL", "dave", "U0ERIN"}}},
	}
	cases := []struct {
		req  policy.Requirement
		want string
	}{
		{policy.Requirement{Group: "dba", Count: 3}, "[U0CAROL U0ERIN carol dave]"},
		{policy.Requirement{Group: "S0SEC", Count: 2}, "[S0SEC]"},
		{policy.Requirement{People: []string{"dave"}, Count: 1}, "[dave]"},
		{policy.Requirement{Group: "dbas", Count: 1}, `requires group "dbas", which the configuration's groups do not define`},
		{policy.Requirement{Group: "dba", Count: 4}, "requires 4 approvals from dba, which has 3 people"},
		{policy.Requirement{People: []string{"eve"}, Count: 1}, `requires "eve", who is neither a people entry nor a Slack user ID`},
	}
	for _, c := range cases {
		q := c.req
		q.Rule, q.Origin = "db.require", policy.OriginRepo
		err := resolveApprovers(cfg, &q)
		got := fmt.Sprint(q.Approvers)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%+v: %s, want %s", c.req, got, c.want)
		}
	}
}

// Kept input documents go once they are older than Temporal keeps runs.
func TestPruneInputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	for name, age := range map[string]time.Duration{"old": 31 * 24 * time.Hour, "new": time.Hour} {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	pruneInputs(dir, now.Add(-keepInputsFor))
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "new" {
		t.Fatalf("left %v, want only the new run's folder", left)
	}
}
