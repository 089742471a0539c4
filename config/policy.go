package config

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Policy configures the Rego policies every plan is judged by before
// anyone is asked (docs/policy.md).
type Policy struct {
	// Path is the repository's folder of policies (*.rego), read from the
	// tree each run deploys, so a change to a policy is reviewed like any
	// change and judges its own commit. Default "policies"; "none" reads
	// no policy from the repository.
	Path string `yaml:"path"`
	// Org are files or folders of the organisation's policies on the
	// worker (relative to the config file). They are evaluated apart from
	// the repository's, which cannot weaken them.
	Org []string `yaml:"org"`
	// Timeout bounds one plan's evaluation (default 10s); longer fails
	// the run closed.
	Timeout Duration `yaml:"timeout"`
}

// Group is a named set of approvers that a policy's require names:
// people entries and Slack user IDs.
type Group struct {
	Name    string   `yaml:"name"`
	Members []string `yaml:"members"`
}

// PolicyNone turns repository policies off.
const PolicyNone = "none"

// DefaultPolicyPath and DefaultPolicyTimeout are policy's defaults.
const (
	DefaultPolicyPath    = "policies"
	DefaultPolicyTimeout = 10 * time.Second
)

// RepoPolicies is the repository folder to read policies from; "" when
// repository policies are off.
func (p Policy) RepoPolicies() string {
	if p.Path == PolicyNone {
		return ""
	}
	return p.Path
}

func (p *Policy) applyDefaults(base string) {
	setDefault(&p.Path, DefaultPolicyPath)
	if p.Path != PolicyNone && !hasDotDot(p.Path) {
		p.Path = path.Clean(strings.TrimPrefix(p.Path, "/"))
	}
	for i, o := range p.Org {
		p.Org[i] = absFrom(base, o)
	}
	if p.Timeout == 0 {
		p.Timeout = Duration(DefaultPolicyTimeout)
	}
}

func (c *Config) validatePolicy(bad func(string, ...any)) {
	p := c.Policy
	if hasDotDot(p.Path) || p.Path == "." {
		bad("policy.path %q must be a folder inside the repository without .., like policies (or none)", p.Path)
	}
	for i, o := range p.Org {
		if strings.TrimSpace(o) == "" {
			bad("policy.org[%d] is empty: name a .rego file or a folder of them on the worker", i)
		}
	}
	if p.Timeout < 0 || (p.Timeout > 0 && p.Timeout.D() < 100*time.Millisecond) {
		bad("policy.timeout %s: use 100ms or more", p.Timeout.D())
	}
	names := map[string]bool{}
	for i, g := range c.Groups {
		at := fmt.Sprintf("groups[%d]", i)
		checkName(at, "give each group a unique name, used by policies' require", g.Name, names, bad)
		if IsSlackUser(g.Name) || IsSlackGroup(g.Name) {
			bad("%s.name %q has the shape of a Slack ID: name groups like dba or security", at, g.Name)
		}
		if len(g.Members) == 0 {
			bad("%s.members is empty: list people entries or Slack user IDs", at)
		}
		for j, m := range g.Members {
			if _, ok := c.PersonByName(m); !ok && !IsSlackUser(m) {
				bad("%s.members[%d] %q is neither a people entry nor a Slack user ID (U…, W…): add a people entry named %s", at, j, m, m)
			}
		}
	}
}

// GroupByName finds a groups entry.
func (c *Config) GroupByName(name string) (Group, bool) {
	for _, g := range c.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}
