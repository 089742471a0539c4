package gate_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/gate/gatetest"
)

var now = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func claim(person string) gate.Claim {
	return gate.Claim{WorkflowID: "change/main/abc", RunID: "r1", Approve: true, Plan: "p", Person: person, IssuedAt: now}
}

func withSlack(c gate.Claim, user, via, email string) gate.Claim {
	c.SlackUser, c.Via, c.SlackEmail = user, via, email
	return c
}

func TestVerify(t *testing.T) {
	bob := gatetest.Person("bob", "bob@example.com")
	bob.Slack = []string{"U0BOB"}
	bob.GitNames = []string{"Bob Builder"}
	g := gate.New([]config.Person{bob, gatetest.Person("mallory")}, "signing-secret")
	key := gate.SlackKey("signing-secret")
	mustSSH := func(name string, c gate.Claim) gate.Signed {
		s, err := gate.SignSSH(gatetest.Signer(name), c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	slackClaim := func(user, person string) gate.Claim {
		c := claim(person)
		c.SlackUser, c.SlackEmail = user, "bob.work@example.com"
		return c
	}
	tests := []struct {
		name    string
		signed  gate.Signed
		at      time.Time
		person  string
		wantErr string
	}{
		{name: "ssh", signed: mustSSH("bob", claim("bob")), at: now, person: "bob"},
		{name: "slack, linked", signed: gate.SignSlack(key, slackClaim("U0BOB", "bob")), at: now, person: "bob"},
		{name: "slack, no people entry", signed: gate.SignSlack(key, slackClaim("U0CAROL", "")), at: now, person: ""},
		{name: "slack claiming the wrong person", signed: gate.SignSlack(key, slackClaim("U0BOB", "mallory")), at: now, wantErr: "the workers' people entries differ"},
		{name: "slack, another key", signed: gate.SignSlack(gate.SlackKey("guess"), slackClaim("U0BOB", "bob")), at: now, wantErr: "not made by changeops' Slack app"},
		{name: "too old", signed: mustSSH("bob", claim("bob")), at: now.Add(gate.MaxAge + time.Second), wantErr: "decide again"},
		{name: "from the future", signed: mustSSH("bob", claim("bob")), at: now.Add(-gate.MaxSkew - time.Second), wantErr: "in the future"},
		{name: "unknown key", signed: mustSSH("eve", claim("bob")), at: now, wantErr: "is not in any people entry"},
		{name: "another's key", signed: mustSSH("mallory", claim("bob")), at: now, wantErr: "belongs to mallory"},
		{name: "no method", signed: gate.Signed{Claim: claim("bob")}, at: now, wantErr: "unknown authentication method"},
		{name: "no time", signed: mustSSH("bob", gate.Claim{Person: "bob"}), at: now, wantErr: "no signing time"},
		// A key's claim cannot speak for a Slack user, group or email that
		// is not the signer's: the Slack app alone vouches for those.
		{name: "ssh, own slack user", signed: mustSSH("bob", withSlack(claim("bob"), "U0BOB", "", "")), at: now, person: "bob"},
		{name: "ssh, another's slack user", signed: mustSSH("mallory", withSlack(claim("mallory"), "U0BOB", "", "")), at: now, wantErr: "not one of theirs"},
		{name: "ssh, a user group", signed: mustSSH("mallory", withSlack(claim("mallory"), "", "S0DBA", "")), at: now, wantErr: "only the Slack app may vouch"},
		{name: "ssh, a slack email", signed: mustSSH("mallory", withSlack(claim("mallory"), "", "", "bob@example.com")), at: now, wantErr: "only the Slack app may vouch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := g.Verify(tt.signed, tt.at)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Person != tt.person {
				t.Fatalf("person = %q, want %q", id.Person, tt.person)
			}
		})
	}

	// Every field of the claim is covered by the signature.
	s := mustSSH("bob", claim("bob"))
	s.Claim.Comment = "added later"
	if _, err := g.Verify(s, now); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("changed comment: err = %v", err)
	}
	sl := gate.SignSlack(key, slackClaim("U0BOB", "bob"))
	sl.Claim.Approve = false
	if _, err := g.Verify(sl, now); err == nil {
		t.Fatal("a Slack decision turned around verified")
	}
	if _, err := gate.New(nil, "").Verify(gate.SignSlack(key, slackClaim("U0BOB", "")), now); err == nil || !strings.Contains(err.Error(), "no Slack secret") {
		t.Fatalf("slack decision on a worker without Slack: err = %v", err)
	}
}

func TestIdentityLinksAndApprovers(t *testing.T) {
	bob := gatetest.Person("bob", "bob@example.com", "4711+bob@users.noreply.github.com")
	bob.Slack = []string{"U0BOB"}
	bob.GitNames = []string{"Bob Builder"}
	g := gate.New([]config.Person{bob}, "s")
	c := claim("bob")
	c.SlackUser, c.SlackEmail = "U0BOB", "robert@example.com"
	id, err := g.Verify(gate.SignSlack(gate.SlackKey("s"), c), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, email, want string }{
		{"", "BOB@example.com", "email BOB@example.com"},
		{"", "4711+bob@users.noreply.github.com", "email 4711+bob@users.noreply.github.com"},
		{"", "robert@example.com", "email robert@example.com"},
		{"bob builder", "ci@example.com", "name bob builder"},
		{"bob", "", "name bob"},
		{"Alice", "alice@example.com", ""},
	} {
		if got := id.LinkedTo(tt.name, tt.email); got != tt.want {
			t.Errorf("LinkedTo(%q, %q) = %q, want %q", tt.name, tt.email, got, tt.want)
		}
	}
	for _, tt := range []struct {
		approvers []string
		via       string
		want      bool
	}{
		{[]string{"bob"}, "", true},
		{[]string{"U0BOB"}, "", true},
		{[]string{"S0OPS"}, "S0OPS", true},
		{[]string{"S0OPS"}, "S0DEV", false},
		{[]string{"alice"}, "", false},
		{[]string{"alice"}, "alice", false}, // only a group ID stands for members
	} {
		if got := id.Allowed(tt.approvers, tt.via); got != tt.want {
			t.Errorf("Allowed(%v, %q) = %v, want %v", tt.approvers, tt.via, got, tt.want)
		}
	}
	// A group reached through Slack does not extend to SSH decisions.
	sshID, err := g.Verify(mustSign(t, "bob", claim("bob")), now)
	if err != nil {
		t.Fatal(err)
	}
	if sshID.Allowed([]string{"S0OPS"}, "S0OPS") {
		t.Error("an SSH decision claimed a Slack group")
	}
}

func mustSign(t *testing.T, name string, c gate.Claim) gate.Signed {
	s, err := gate.SignSSH(gatetest.Signer(name), c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RSA keys sign with SHA-512; a SHA-1 signature is refused.
func TestRSA(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := config.Person{Name: "rsa", Keys: []string{string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}}
	g := gate.New([]config.Person{p}, "")
	s, err := gate.SignSSH(signer, claim("rsa"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Format != ssh.KeyAlgoRSASHA512 {
		t.Fatalf("format = %s, want %s", s.Format, ssh.KeyAlgoRSASHA512)
	}
	if _, err := g.Verify(s, now); err != nil {
		t.Fatal(err)
	}
	sha1, err := signer.Sign(rand.Reader, []byte("anything"))
	if err != nil {
		t.Fatal(err)
	}
	s.Format, s.Signature = sha1.Format, sha1.Blob
	if _, err := g.Verify(s, now); err == nil || !strings.Contains(err.Error(), "SHA-1") {
		t.Fatalf("SHA-1 signature: err = %v", err)
	}
}

// Claims signed before Action, Stack and Until existed still verify: the
// new fields are left out of the signed JSON when empty, so the bytes of
// an old decision are the bytes the current code signs and checks. And a
// signature over a decision does not cover the same claim as an override.
func TestClaimsBeforeActionsStillVerify(t *testing.T) {
	// The claim as it was, field for field.
	type claimV1 struct {
		WorkflowID string
		RunID      string
		Approve    bool
		Comment    string
		Plan       string
		Person     string `json:",omitempty"`
		SlackUser  string `json:",omitempty"`
		SlackEmail string `json:",omitempty"`
		Via        string `json:",omitempty"`
		IssuedAt   time.Time
	}
	old := claimV1{WorkflowID: "change/main/abc", RunID: "r1", Approve: true, Comment: "ok", Plan: "p", Person: "bob", IssuedAt: now}
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := gatetest.Signer("bob").Sign(rand.Reader, append([]byte("changeops-decision-v1\n"), b...))
	if err != nil {
		t.Fatal(err)
	}
	bob := gatetest.Person("bob")
	g := gate.New([]config.Person{bob}, "")
	signed := gate.Signed{
		Claim:  gate.Claim{WorkflowID: old.WorkflowID, RunID: old.RunID, Approve: true, Comment: "ok", Plan: "p", Person: "bob", IssuedAt: now},
		Method: gate.MethodSSH, Key: bob.Keys[0], Fingerprint: gate.Fingerprint(bob.Keys[0]), Format: sig.Format, Signature: sig.Blob,
	}
	if _, err := g.Verify(signed, now); err != nil {
		t.Fatalf("a claim signed before actions existed: %v", err)
	}
	signed.Claim.Action = gate.ActionOverride
	if _, err := g.Verify(signed, now); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("an approval's signature passed off as an override: err = %v", err)
	}
	slack := gate.SlackKey("s")
	v1 := gate.SignSlack(slack, gate.Claim{WorkflowID: "w", IssuedAt: now, SlackUser: "U0BOB"})
	m := hmac.New(sha256.New, slack)
	b, _ = json.Marshal(claimV1{WorkflowID: "w", IssuedAt: now, SlackUser: "U0BOB"})
	m.Write(append([]byte("changeops-decision-v1\n"), b...))
	if !hmac.Equal(m.Sum(nil), v1.Signature) {
		t.Fatal("the Slack app's signature over a decision changed")
	}
}
