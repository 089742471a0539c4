package cmd

import (
	"strings"
	"testing"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/workflows"
)

// A leader asking for its batch lists every change the decision covers;
// a member waiting on it names the run to decide.
func TestStatusShowsWhatABatchDecisionCovers(t *testing.T) {
	t.Parallel()
	leader := &workflows.Status{Approval: workflows.Approval{Required: true, Approvers: []string{"bob"}}, BatchCommits: []activities.Commit{
		{SHA: "c1aaaaaaaa", Subject: "Serve c1", AuthorName: "alice"}, {SHA: "c2bbbbbbbb", Subject: "Serve c2", AuthorName: "carol"},
	}}
	member := &workflows.Status{BatchPending: &contract.BatchPending{Leader: "change/main/c1aaaaaaaa", LeaderCommit: "c1aaaaa", Changes: 2}}
	for _, c := range []struct {
		st   *workflows.Status
		want []string
	}{
		{leader, []string{"covers c1aaaaa Serve c1 (alice)", "covers c2bbbbb Serve c2 (carol)"}},
		{member, []string{"batch waits for the approval of its batch of 2: decide run change/main/c1aaaaaaaa (commit c1aaaaa)"}},
	} {
		var b strings.Builder
		printStatus(&b, starter.Run{ID: "change/main/x", Status: c.st})
		out := strings.Join(strings.Fields(b.String()), " ") // columns padded to taste
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("status lacks %q:\n%s", w, b.String())
			}
		}
	}
}
