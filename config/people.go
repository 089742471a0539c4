package config

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Person links one human's identities: the name approvers lists use, the
// Slack users they click as, the emails and git names they commit under,
// and the SSH public keys that sign their decisions on the command line.
// Four eyes compares all of them with a commit's author and committer, so
// a person cannot approve their own change under another identity.
type Person struct {
	Name string `yaml:"name"`
	// Slack are Slack user IDs (U…, W…).
	Slack []string `yaml:"slack"`
	// Emails are every address the person commits or signs in with,
	// including forge noreply addresses (123+bob@users.noreply.github.com).
	Emails []string `yaml:"emails"`
	// GitNames are author names the person commits under besides Name.
	GitNames []string `yaml:"git_names"`
	// Keys are SSH public keys in authorized_keys form; `changeops approve`
	// signs with the matching private key (a file or ssh-agent).
	Keys []string `yaml:"keys"`
	// Forge are the person's logins on the repositories' forges: their
	// approvals of pull requests count under approval: pull-request.
	Forge []string `yaml:"forge"`
}

// PersonByName finds a people entry.
func (c *Config) PersonByName(name string) (Person, bool) {
	for _, p := range c.People {
		if p.Name == name {
			return p, true
		}
	}
	return Person{}, false
}

// validatePeople refuses an entry that cannot be used or that would make
// two people one: a shared Slack ID, email or key would let one person's
// decision count as another's.
func (c *Config) validatePeople(bad func(string, ...any)) {
	names := map[string]bool{}
	owner := map[string]string{} // identity -> person
	claim := func(at, kind, id, person string) {
		key := kind + ":" + strings.ToLower(id)
		if prev, ok := owner[key]; ok && prev != person {
			bad("%s: %s %q is also listed for %s: one identity belongs to one person", at, kind, id, prev)
		}
		owner[key] = person
	}
	for i, p := range c.People {
		at := fmt.Sprintf("people[%d]", i)
		if p.Name != "" {
			at = fmt.Sprintf("people[%d] (%s)", i, p.Name)
		}
		checkName(at, "give each person a unique name, used in stacks[].approvers", p.Name, names, bad)
		if IsSlackUser(p.Name) || IsSlackGroup(p.Name) {
			// An approvers entry naming a Slack user or group must not
			// match a person who signs with an SSH key.
			bad("%s.name %q has the shape of a Slack user or group ID: name people like alice or bob-smith", at, p.Name)
		}
		if len(p.Slack) == 0 && len(p.Keys) == 0 {
			bad("%s has neither slack nor keys: list the person's Slack user ID, or an SSH public key for changeops approve, or both", at)
		}
		for j, id := range p.Slack {
			if !IsSlackUser(id) {
				bad("%s.slack[%d] %q is not a Slack user ID: copy it from the person's Slack profile (U… or W…)", at, j, id)
			}
			claim(at, "slack user", id, p.Name)
		}
		for j, e := range p.Emails {
			if !strings.Contains(e, "@") || strings.ContainsAny(e, " \t\n") {
				bad("%s.emails[%d] %q is not an email address", at, j, e)
			}
			claim(at, "email", e, p.Name)
		}
		for j, l := range p.Forge {
			if strings.TrimSpace(l) == "" || strings.ContainsAny(l, " \t\n") {
				bad("%s.forge[%d] %q is not a forge login", at, j, l)
			}
			claim(at, "forge login", l, p.Name)
		}
		for j, n := range p.GitNames {
			if strings.TrimSpace(n) == "" {
				bad("%s.git_names[%d] is empty", at, j)
			}
		}
		for j, k := range p.Keys {
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil {
				bad("%s.keys[%d] is not an SSH public key (%v): paste one line of the person's ~/.ssh/id_ed25519.pub", at, j, err)
				continue
			}
			claim(at, "key", ssh.FingerprintSHA256(pub), p.Name)
		}
	}
}

// validateApprovers refuses an approvers entry that no authenticated
// decision can ever match: decisions come from Slack users or from the
// keys of people, so an entry is a person, a Slack user or a Slack user
// group.
func (c *Config) validateApprovers(at string, approvers []string, bad func(string, ...any)) {
	for j, a := range approvers {
		if strings.TrimSpace(a) == "" {
			bad("%s.approvers[%d] is empty: remove the entry, or name a people entry, Slack user or user group ID", at, j)
			continue
		}
		if _, ok := c.PersonByName(a); ok || IsSlackUser(a) || IsSlackGroup(a) {
			continue
		}
		bad("%s.approvers[%d] %q is neither a people entry nor a Slack user (U…, W…) or user group (S…) ID: add a people entry named %s with the person's Slack ID or SSH key", at, j, a, a)
	}
}

// IsSlackUser says whether s has the shape of a Slack user ID (U…, W…).
func IsSlackUser(s string) bool { return slackID(s, "UW") }

// IsSlackGroup says whether s has the shape of a Slack user group ID (S…).
func IsSlackGroup(s string) bool { return slackID(s, "S") }

func slackID(s, prefixes string) bool {
	if len(s) < 3 || !strings.ContainsRune(prefixes, rune(s[0])) {
		return false
	}
	for _, r := range s[1:] {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
