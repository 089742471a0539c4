package workflows

import (
	"strings"
	"time"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/gate/gatetest"
)

// testSlackSecret stands for the Slack app's signing secret.
const testSlackSecret = "test-slack-signing-secret"

// testGate knows the people of the workflow tests: alice writes the
// commits (alice@example.com); bob and mallory sign with SSH keys; erin
// is a Slack user linked to her people entry; dave merges (the
// committer). Slack users with no
// entry (U0ALICE, U0BOB) are vouched for by the Slack app alone.
var testGate = gate.New([]config.Person{
	gatetest.Person("alice", "alice@example.com"),
	gatetest.Person("bob", "bob@example.com"),
	gatetest.Person("mallory"),
	gatetest.Person("dave", "dave@example.com"),
	{Name: "erin", Slack: []string{"U0ERIN"}},
}, testSlackSecret)

// sign turns a test's plain request into what the Slack app or
// `changeops approve` would send now for the run st shows: a Slack user
// (U…) signed by the Slack app, anyone else with their SSH key.
func sign(st Status, req DecisionRequest, now time.Time) DecisionRequest {
	c := gate.Claim{WorkflowID: st.ID, RunID: st.RunID, Approve: req.Approve, Comment: req.Comment, Plan: st.PlanDigest(), IssuedAt: now}
	if strings.HasPrefix(req.User, "U0") {
		c.SlackUser, c.SlackEmail, c.Via = req.User, req.Email, req.Via
		if p, ok := testGate.Person(req.User); ok {
			c.Person = p.Name
		}
		signed := gate.SignSlack(gate.SlackKey(testSlackSecret), c)
		return DecisionRequest{Signed: &signed}
	}
	c.Person = req.User
	signed, err := gate.SignSSH(gatetest.Signer(req.User), c)
	if err != nil {
		panic(err)
	}
	return DecisionRequest{Signed: &signed}
}

// Each way to decide without an authenticated person is refused with a
// reason, and the run keeps waiting for a real approver.
func (s *ChangeSuite) TestForgedDecisionsAreRefused() {
	s.inspect(stack("web", config.ApprovalManual, "bob", "U0BOB"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var unsigned, otherRun, stale, otherPlan, tampered, wrongKey, forgedSlack, ok error
	// What `temporal workflow update execute --input '{"Approve":true,"User":"bob"}'` sends.
	s.decideSigned(time.Minute, func(Status, time.Time) DecisionRequest {
		return DecisionRequest{Approve: true, User: "bob"}
	}, &unsigned)
	s.decideSigned(2*time.Minute, func(st Status, now time.Time) DecisionRequest {
		st.RunID = "another-run"
		return sign(st, DecisionRequest{Approve: true, User: "bob"}, now)
	}, &otherRun)
	s.decideSigned(3*time.Minute, func(st Status, now time.Time) DecisionRequest {
		return sign(st, DecisionRequest{Approve: true, User: "bob"}, now.Add(-gate.MaxAge-time.Second))
	}, &stale)
	s.decideSigned(4*time.Minute, func(st Status, now time.Time) DecisionRequest {
		st.Plans = nil
		return sign(st, DecisionRequest{Approve: true, User: "bob"}, now)
	}, &otherPlan)
	s.decideSigned(5*time.Minute, func(st Status, now time.Time) DecisionRequest {
		req := sign(st, DecisionRequest{Approve: false, User: "bob"}, now)
		req.Signed.Claim.Approve = true // a rejection turned into an approval
		return req
	}, &tampered)
	s.decideSigned(6*time.Minute, func(st Status, now time.Time) DecisionRequest {
		req := sign(st, DecisionRequest{Approve: true, User: "mallory"}, now)
		req.Signed.Claim.Person = "bob" // mallory's key claiming to be bob
		return req
	}, &wrongKey)
	s.decideSigned(7*time.Minute, func(st Status, now time.Time) DecisionRequest {
		c := gate.Claim{WorkflowID: st.ID, RunID: st.RunID, Approve: true, Plan: st.PlanDigest(), SlackUser: "U0BOB", IssuedAt: now}
		signed := gate.SignSlack(gate.SlackKey("a guessed secret"), c)
		return DecisionRequest{Signed: &signed}
	}, &forgedSlack)
	s.decide(8*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &ok)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.ErrorContains(unsigned, "the decision is not signed")
	s.ErrorContains(otherRun, "was signed for run default-test-workflow-id (another-run)")
	s.ErrorContains(stale, "more than 5m0s: decide again")
	s.ErrorContains(otherPlan, "for another plan")
	s.ErrorContains(tampered, "does not verify")
	s.ErrorContains(wrongKey, "belongs to mallory, not \"bob\"")
	s.ErrorContains(forgedSlack, "not made by changeops' Slack app")
	s.NoError(ok)
	st := s.status()
	s.Equal("bob", st.Decision.User)
	s.Equal(gate.MethodSSH, st.Decision.Method)
	s.Equal(gate.Fingerprint(gatetest.Person("bob").Keys[0]), st.Decision.Key)
}

// Four eyes refuses whoever is linked to the committer (on a forge merge,
// the person who merged), not only the author.
func (s *ChangeSuite) TestFourEyesRefusesCommitter() {
	web := stack("web", config.ApprovalManual, "dave", "bob")
	web.FourEyes = true
	s.inspect(web)
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var committer, rejectByCommitter error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "dave"}, &committer)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &rejectByCommitter)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.ErrorContains(committer, "dave is linked to the committer of commit 3f2a91c by email dave@example.com")
	s.NoError(rejectByCommitter)
}

// A person decides through Slack under their people entry: the entry's
// name is what approvers list and what the run records.
func (s *ChangeSuite) TestSlackUserLinkedToPerson() {
	s.inspect(stack("web", config.ApprovalManual, "erin"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var ok error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "U0ERIN"}, &ok)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.NoError(ok)
	st := s.status()
	s.Equal("erin", st.Decision.User)
	s.Equal(gate.MethodSlack, st.Decision.Method)
}

// Under four eyes a Slack approval must carry the user's email: without
// it the run could not compare the user with the commit.
func (s *ChangeSuite) TestFourEyesRefusesSlackApprovalWithoutEmail() {
	web := stack("web", config.ApprovalManual, "U0BOB", "bob")
	web.FourEyes = true
	s.inspect(web)
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var noEmail, ok error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "U0BOB"}, &noEmail)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob"}, &ok)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.ErrorContains(noEmail, "carries no email")
	s.NoError(ok)
}

// A comment is bounded before it reaches the status and the messages.
func (s *ChangeSuite) TestLongCommentIsRefused() {
	s.inspect(stack("web", config.ApprovalManual, "bob"))
	s.plan("web", activities.PlanResult{Update: 1})
	s.apply("web")
	s.verify("web", true).Once()
	var long, ok error
	s.decide(time.Minute, DecisionRequest{Approve: true, User: "bob", Comment: strings.Repeat("x", 3000)}, &long)
	s.decide(2*time.Minute, DecisionRequest{Approve: true, User: "bob", Comment: "ok"}, &ok)

	s.Equal(contract.StateSucceeded, s.run().State)
	s.ErrorContains(long, "the comment is 3000 bytes")
	s.NoError(ok)
}
