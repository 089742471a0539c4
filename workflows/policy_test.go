package workflows

import (
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/policy"
)

func requiring(stack string, reqs ...policy.Requirement) activities.PlanResult {
	return activities.PlanResult{Stack: stack, Update: 1, Policy: &policy.Result{Digest: "d", Require: reqs}}
}

// Policies' require adds requirements to the stacks' own, asks on a stack
// that would not have asked, and keeps the largest count per group.
func TestWithPolicy(t *testing.T) {
	t.Parallel()
	dba := policy.Requirement{Rule: "db.require", Origin: policy.OriginRepo, Group: "dba", Count: 1, Approvers: []string{"dave", "carol"}}
	dba2 := dba
	dba2.Count, dba2.Message = 2, "deletes a database"
	stacks := []config.Stack{
		{Name: "web", Approval: config.ApprovalManual, Approvers: []string{"bob"}, ApprovalTimeout: config.Duration(time.Hour)},
		{Name: "tags", Approval: config.ApprovalOnDestructive, Approvers: []string{"bob"}, ApprovalTimeout: config.Duration(30 * time.Minute)},
	}
	plans := []activities.PlanResult{requiring("web", dba), requiring("tags", dba2)}

	ap := approvalFor(stacks, plans)
	withPolicy(&ap, stacks, plans)
	if len(ap.Requirements) != 2 || ap.Requirements[0].Who != "an approver of web" || ap.Requirements[1].Count != 2 ||
		!strings.Contains(ap.Requirements[1].Why, "deletes a database") || !ap.FourEyes || ap.Timeout != time.Hour {
		t.Fatalf("approval = %+v", ap)
	}
	if got := strings.Join(ap.Approvers, ","); got != "bob,carol,dave" {
		t.Errorf("approvers = %s, want everyone who counts toward one", got)
	}

	// An on-destructive stack with a plan that only updates does not ask,
	// unless a policy requires it.
	only := stacks[1:]
	ap = approvalFor(only, plans[1:])
	if ap.Required {
		t.Fatal("the stack asks for an update: the test is wrong")
	}
	withPolicy(&ap, only, plans[1:])
	if !ap.Required || len(ap.Requirements) != 1 || ap.Timeout != 30*time.Minute {
		t.Fatalf("approval = %+v, want dba's requirement alone with the stack's timeout", ap)
	}

	// Without require, nothing changes.
	ap = approvalFor(stacks, []activities.PlanResult{{Stack: "web", Update: 1}})
	before := ap
	withPolicy(&ap, stacks, nil)
	if len(ap.Requirements) != 0 || ap.FourEyes != before.FourEyes {
		t.Fatalf("approval = %+v, want it as approvalFor made it", ap)
	}
}

// Approvals accumulate, each counting toward the requirements its signer
// is in; a second approval by the same person, or one by someone in no
// missing requirement, is refused naming what is missing.
func TestApprovalsAccumulate(t *testing.T) {
	t.Parallel()
	st := &Status{ID: "change/main/abc1234", Commit: activities.Commit{SHA: "abc1234def"}}
	st.Approval = Approval{Requirements: []Requirement{
		{Who: "an approver of web", Approvers: []string{"bob", "mallory"}, Count: 1},
		{Who: "group dba", Approvers: []string{"S0DBA", "carol", "dave"}, Count: 2},
	}}
	claim := func(person string) gate.Claim { return gate.Claim{Person: person, Approve: true} }
	approve := func(c gate.Claim, method string) error {
		if err := refuseApproval(st, c, method); err != nil {
			return err
		}
		st.Approvals = append(st.Approvals, Decision{User: c.Who(), Approve: true, Counts: countsToward(st.Approval.Requirements, c, method)})
		return nil
	}
	if err := approve(claim("bob"), gate.MethodSSH); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		person, want string
	}{
		{"bob", "bob already approved change abc1234; it still needs 2 from group dba"},
		{"mallory", "mallory may not approve change abc1234: it still needs 2 from group dba, and mallory is not among them"},
	} {
		if err := approve(claim(c.person), gate.MethodSSH); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.person, err, c.want)
		}
	}
	if err := approve(claim("carol"), gate.MethodSSH); err != nil {
		t.Fatal(err)
	}
	if left := missing(st.Approval, st.Approvals); len(left) != 1 || left[0].Count != 1 {
		t.Fatalf("missing = %+v, want one more from dba", left)
	}
	// A member of the Slack user group counts when the Slack app vouches
	// for the group, and only then.
	erin := gate.Claim{SlackUser: "U0ERIN", Via: "S0DBA", Approve: true}
	if err := refuseApproval(st, erin, gate.MethodSSH); err == nil {
		t.Error("a group named without the Slack app's word counted")
	}
	if err := approve(erin, gate.MethodSlack); err != nil {
		t.Fatal(err)
	}
	if left := missing(st.Approval, st.Approvals); len(left) != 0 {
		t.Fatalf("missing = %+v after bob, carol and a dba member", left)
	}
}

// A deny ends the run before anyone is asked: nothing is applied (Apply is
// not mocked) and the reason names the stack, the rule and the resource.
func (s *ChangeSuite) TestPolicyDenyEndsBeforeApproval() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1, Policy: &policy.Result{Digest: "d",
		Deny: []policy.Violation{{Rule: "buckets.deny", Origin: policy.OriginOrg, Message: "buckets must not be public", Resource: "urn:b"}},
		Warn: []policy.Violation{{Rule: "tickets.warn", Origin: policy.OriginRepo, Message: "no ticket"}}}})

	res := s.run()
	s.Equal(contract.StatePolicyDenied, res.State)
	s.Equal("denied by policy before anyone was asked: stack web: org policy buckets.deny: buckets must not be public (urn:b)", res.Reason)
	s.NotContains(states(s.status()), contract.StateAwaitingApproval)
	s.Equal([]string{"received", "plan ready", contract.StatePolicyDenied}, s.notes)
}

// A require on a stack that would not ask (on-destructive, an update)
// makes the run ask, and only the group's approvals decide it; the
// author, though in the group, does not count (four eyes).
func (s *ChangeSuite) TestPolicyRequireAsksAndAccumulates() {
	s.inspect(stack("web", config.ApprovalOnDestructive, "bob"))
	s.plan("web", activities.PlanResult{Update: 1, Policy: &policy.Result{Digest: "d",
		Require: []policy.Requirement{{Rule: "tags.require", Origin: policy.OriginRepo, Group: "dba", Count: 2, Approvers: []string{"alice", "bob", "mallory"}}}}})
	s.apply("web")
	s.verify("web", true).Once()
	var author, first, again, second error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "alice"}, &author)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &first)
	s.decide(3*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &again)
	s.decide(4*time.Minute, DecisionRequest{Approve: true, User: "mallory", Comment: "ok"}, &second)

	res := s.run()
	s.Equal(contract.StateSucceeded, res.State)
	s.ErrorContains(author, "alice is linked to the author")
	s.NoError(first)
	s.ErrorContains(again, "bob already approved change")
	s.NoError(second)
	st := s.status()
	s.Len(st.Approvals, 2)
	s.Equal("mallory", st.Decision.User)
	s.Equal([]string{"received", "plan ready", "awaiting approval", "approved by bob", "approved by bob, mallory", "applying", "applied", "verified web", "succeeded"}, s.notes)
}

// Re-applying git over drift is judged like a change: a deny stops a heal
// (nothing applied: Apply is not mocked).
func (s *ChangeSuite) TestPolicyDenyStopsADriftHeal() {
	s.driftSetup(driftStack(config.DriftHeal), &contract.Deployed{Commit: sha})
	found := drifted
	found.Plan.Policy = &policy.Result{Digest: "d", Deny: []policy.Violation{{Rule: "deny", Origin: policy.OriginOrg, Message: "no heals on Fridays"}}}
	s.check(found)

	res := s.runDrift(DriftInput{})
	s.Equal(contract.StatePolicyDenied, res.State)
	s.Contains(res.Reason, "stack web: org policy deny: no heals on Fridays")
}
