// Package gate authenticates approval decisions. A decision counts only when
// a path that authenticated a person signed it: the Slack app, which
// verified Slack's request and vouches for the clicking user with a key
// derived from the Slack app's secret, or a person's own SSH key through
// `changeops approve`. Whoever can only reach Temporal holds neither, so the
// Update they send is refused (docs/security.md, "Who can decide").
//
// Each signature covers one run (workflow and run ID), the plan the decider
// saw, the decision and the time, so a signed decision cannot be replayed
// onto another run, another plan, or later than MaxAge.
package gate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/changeops/changeops/config"
)

// Methods a decision is authenticated by.
const (
	MethodSlack = "slack" // the Slack app vouched for a verified click
	MethodSSH   = "ssh"   // a person's SSH key signed it
	// MethodForge: an approval of the pull request on the forge, read
	// with changeops' token (approval: pull-request); not a signed claim.
	MethodForge = "forge"
)

// MaxAge bounds how old a signed decision may be when the run receives it;
// MaxSkew how far in the future (clocks differ between machines).
const (
	MaxAge  = 5 * time.Minute
	MaxSkew = time.Minute
)

// Claim is what a decider decided, bound to one run and one plan.
type Claim struct {
	WorkflowID string
	RunID      string
	Approve    bool
	Comment    string
	// Plan is the digest of the plans the decider saw (workflows'
	// Status.PlanDigest): a decision for an older plan does not count.
	Plan string
	// Person is the people entry deciding; empty for a Slack user that
	// no entry lists.
	Person string `json:",omitempty"`
	// SlackUser, SlackEmail and Via are what the Slack app verified: the
	// clicking user, their email (for four eyes) and the user group
	// through which they may decide.
	SlackUser  string `json:",omitempty"`
	SlackEmail string `json:",omitempty"`
	Via        string `json:",omitempty"`
	IssuedAt   time.Time
	// Action is what the claim is, when it is not a decision on a run
	// (empty): ActionOverride, ActionFreeze or ActionUnfreeze. A claim
	// counts only for its own action, so a signed approval can never pass
	// for an override or an unfreeze. The fields below are left out of
	// the signed JSON when empty, so the bytes of a decision, and the
	// signatures over them, are what they were before they existed.
	Action string `json:",omitempty"`
	// Stack is the stack a freeze or unfreeze is for; empty for every
	// stack.
	Stack string `json:",omitempty"`
	// Until ends a freeze; zero: until it is lifted.
	Until time.Time `json:",omitzero"`
}

// Actions a claim can sign besides a decision on a run.
const (
	// ActionOverride is one person's vote to apply a run outside its
	// change window or inside a freeze (break glass); Comment is why.
	ActionOverride = "override-window"
	// ActionFreeze and ActionUnfreeze stop and resume the applies of a
	// stack (or all); WorkflowID names the freezes workflow and Plan the
	// freezes it showed, so a signed claim cannot be sent again later.
	ActionFreeze   = "freeze"
	ActionUnfreeze = "unfreeze"
)

// Who names the decider for people: the person, else the Slack user.
func (c Claim) Who() string {
	if c.Person != "" {
		return c.Person
	}
	return c.SlackUser
}

// Signed is a claim with its proof. Nothing in it is secret: it is kept in
// the run's history as the record of who decided.
type Signed struct {
	Claim  Claim
	Method string
	// Key is the signer's SSH public key (authorized_keys form) and
	// Fingerprint its SHA256 fingerprint (checked against Key), for
	// MethodSSH.
	Key         string `json:",omitempty"`
	Fingerprint string `json:",omitempty"`
	Format      string `json:",omitempty"`
	Signature   []byte
}

// message is what is signed: a domain tag, so that no other use of the same
// key can be passed off as a decision, then the claim as JSON (field order
// is the struct's, so the bytes are stable).
func message(c Claim) []byte {
	b, _ := json.Marshal(c) // a struct of strings, bools and a time cannot fail
	return append([]byte("changeops-decision-v1\n"), b...)
}

// SignSSH signs c with a person's key (a file's or ssh-agent's). RSA keys
// sign with SHA-512, never SHA-1.
func SignSSH(signer ssh.Signer, c Claim) (Signed, error) {
	var sig *ssh.Signature
	var err error
	if as, ok := signer.(ssh.AlgorithmSigner); ok && signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		sig, err = as.SignWithAlgorithm(rand.Reader, message(c), ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, message(c))
	}
	if err != nil {
		return Signed{}, fmt.Errorf("sign the decision with %s: %w", ssh.FingerprintSHA256(signer.PublicKey()), err)
	}
	return Signed{
		Claim:       c,
		Method:      MethodSSH,
		Key:         strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
		Fingerprint: ssh.FingerprintSHA256(signer.PublicKey()),
		Format:      sig.Format,
		Signature:   sig.Blob,
	}, nil
}

// SlackKey derives the key with which the Slack app vouches for a click
// from the app's secret (the signing secret, or the app-level token in
// Socket Mode). Every worker of a deployment has that secret already, and
// someone with only Temporal access has not; the derivation keeps the
// secret itself out of this use.
func SlackKey(secret string) []byte {
	if secret == "" {
		return nil
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("changeops decision key v1"))
	return m.Sum(nil)
}

// SignSlack is the Slack app's signature over a verified click.
func SignSlack(key []byte, c Claim) Signed {
	m := hmac.New(sha256.New, key)
	m.Write(message(c))
	return Signed{Claim: c, Method: MethodSlack, Signature: m.Sum(nil)}
}

// Identity is the person behind a verified decision, with every identity
// four eyes compares.
type Identity struct {
	// Person is the people entry; empty for a Slack user no entry lists.
	Person    string
	SlackUser string
	// Slack, Emails and Names are all the person's identities.
	Slack  []string
	Emails []string
	Names  []string
	Method string
	// Key is the SSH key's fingerprint, for MethodSSH.
	Key string
}

// Gate verifies signed decisions against the people directory and the
// Slack app's key, as the worker's configuration has them now (so a removed
// key or person stops counting at once, even for runs already waiting).
type Gate struct {
	byKey    map[string]config.Person // SHA256 fingerprint -> person
	bySlack  map[string]config.Person
	slackKey []byte
}

// New builds the gate of a worker: people from the config (validated), the
// Slack app's secret (empty without Slack).
func New(people []config.Person, slackSecret string) *Gate {
	g := &Gate{byKey: map[string]config.Person{}, bySlack: map[string]config.Person{}, slackKey: SlackKey(slackSecret)}
	for _, p := range people {
		for _, k := range p.Keys {
			if pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err == nil {
				g.byKey[ssh.FingerprintSHA256(pub)] = p
			}
		}
		for _, id := range p.Slack {
			g.bySlack[id] = p
		}
	}
	return g
}

// Person finds the people entry that lists a Slack user.
func (g *Gate) Person(slackUser string) (config.Person, bool) {
	if g == nil {
		return config.Person{}, false
	}
	p, ok := g.bySlack[slackUser]
	return p, ok
}

// ForgeUser is the person a forge login belongs to (people[].forge),
// ignoring case as forges do.
func ForgeUser(people []config.Person, login string) (Identity, bool) {
	for _, p := range people {
		if containsFold(p.Forge, login) {
			return withPerson(Identity{Method: MethodForge}, p), true
		}
	}
	return Identity{}, false
}

// Verify checks a decision's signature and age and returns who made it.
// Binding to the run and its plan is the run's own check.
func (g *Gate) Verify(s Signed, now time.Time) (Identity, error) {
	if g == nil {
		return Identity{}, errors.New("this worker cannot authenticate decisions")
	}
	c := s.Claim
	switch age := now.Sub(c.IssuedAt); {
	case c.IssuedAt.IsZero():
		return Identity{}, errors.New("the decision carries no signing time")
	case age > MaxAge:
		return Identity{}, fmt.Errorf("the decision was signed %s ago, more than %s: decide again", age.Round(time.Second), MaxAge)
	case age < -MaxSkew:
		return Identity{}, fmt.Errorf("the decision is signed %s in the future: check the clock of the machine that signed it", (-age).Round(time.Second))
	}
	switch s.Method {
	case MethodSlack:
		return g.verifySlack(s)
	case MethodSSH:
		return g.verifySSH(s)
	}
	return Identity{}, fmt.Errorf("unknown authentication method %q: decide through Slack or `changeops approve` with your SSH key", s.Method)
}

func (g *Gate) verifySlack(s Signed) (Identity, error) {
	if g.slackKey == nil {
		return Identity{}, errors.New("a Slack decision arrived but this worker has no Slack secret to check it with (slack.signing_secret_env or slack.app_token_env)")
	}
	want := SignSlack(g.slackKey, s.Claim).Signature
	if !hmac.Equal(want, s.Signature) {
		return Identity{}, errors.New("the Slack decision's signature does not verify: it was not made by changeops' Slack app")
	}
	c := s.Claim
	id := Identity{SlackUser: c.SlackUser, Slack: []string{c.SlackUser}, Method: MethodSlack}
	if c.SlackEmail != "" {
		id.Emails = []string{c.SlackEmail}
	}
	if p, ok := g.bySlack[c.SlackUser]; ok {
		if c.Person != p.Name {
			return Identity{}, fmt.Errorf("Slack user %s is %s in people, but the decision names %q: the workers' people entries differ; deploy one configuration", c.SlackUser, p.Name, c.Person)
		}
		id = withPerson(id, p)
	} else if c.Person != "" {
		return Identity{}, fmt.Errorf("the decision names person %s, whom no people entry links to Slack user %s", c.Person, c.SlackUser)
	}
	return id, nil
}

func (g *Gate) verifySSH(s Signed) (Identity, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.Key))
	if err != nil {
		return Identity{}, fmt.Errorf("the decision's key is not an SSH public key: %w", err)
	}
	fp := ssh.FingerprintSHA256(pub)
	if s.Fingerprint != fp {
		return Identity{}, fmt.Errorf("the decision names key %s but carries key %s", s.Fingerprint, fp)
	}
	p, ok := g.byKey[fp]
	if !ok {
		return Identity{}, fmt.Errorf("key %s is not in any people entry: add it to the person's people[].keys", fp)
	}
	if s.Claim.Person != p.Name {
		return Identity{}, fmt.Errorf("key %s belongs to %s, not %q", fp, p.Name, s.Claim.Person)
	}
	if s.Format == ssh.KeyAlgoRSA {
		return Identity{}, errors.New("the decision is signed with RSA and SHA-1, which is refused: use a current changeops or an ed25519 key")
	}
	if err := pub.Verify(message(s.Claim), &ssh.Signature{Format: s.Format, Blob: s.Signature}); err != nil {
		return Identity{}, fmt.Errorf("the signature by key %s does not verify: %w", fp, err)
	}
	// The claim's Slack fields are vouched for by the Slack app only: in a
	// key's claim they are the signer's word, and what reads the claim
	// later (the replayed handler counting approvals) must be able to
	// believe them. So a Slack user must be one of the person's own, and a
	// user group or Slack email is refused.
	switch c := s.Claim; {
	case c.SlackUser != "" && !slices.Contains(p.Slack, c.SlackUser):
		return Identity{}, fmt.Errorf("the decision signed by %s names Slack user %q, which is not one of theirs in people", p.Name, c.SlackUser)
	case c.Via != "" || c.SlackEmail != "":
		return Identity{}, fmt.Errorf("the decision signed by %s carries a Slack user group or email, which only the Slack app may vouch for", p.Name)
	}
	return withPerson(Identity{Method: MethodSSH, Key: fp}, p), nil
}

func withPerson(id Identity, p config.Person) Identity {
	id.Person = p.Name
	id.Slack = appendNew(id.Slack, p.Slack...)
	id.Emails = appendNew(id.Emails, p.Emails...)
	id.Names = appendNew([]string{p.Name}, p.GitNames...)
	return id
}

func appendNew(list []string, more ...string) []string {
	for _, m := range more {
		if !containsFold(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func containsFold(list []string, s string) bool {
	for _, l := range list {
		if strings.EqualFold(l, s) {
			return true
		}
	}
	return false
}

// LinkedTo says how the identity is linked to a git identity (a commit's
// author or committer): "email x" or "name y", empty when it is not.
// Emails and names compare ignoring case; over-matching a name only asks
// for another approver.
func (id Identity) LinkedTo(name, email string) string {
	if email != "" && containsFold(id.Emails, email) {
		return "email " + email
	}
	if name != "" && containsFold(id.Names, name) {
		return "name " + name
	}
	return ""
}

// Allowed says whether the identity is listed in approvers: as the person,
// one of the person's Slack users, or the user group the Slack app found
// the user in (via).
func (id Identity) Allowed(approvers []string, via string) bool {
	for _, a := range approvers {
		if (id.Person != "" && a == id.Person) || containsFold(id.Slack, a) ||
			(id.Method == MethodSlack && via != "" && a == via && config.IsSlackGroup(via)) {
			return true
		}
	}
	return false
}

// Fingerprint is an authorized_keys line's SHA256 fingerprint, or "" when
// it is not a key.
func Fingerprint(authorizedKey string) string {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(authorizedKey)))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(pub)
}
