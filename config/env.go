package config

import (
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"
)

// The worker's secrets stay with the worker. A stack's program, its
// providers and its command checks run code from the repository, so they
// get an environment built on purpose (internal/pulumienv): a base set,
// the Pulumi settings, and the variables pulumi.env and stacks[].env
// match. The variables the *_env fields name are never among them, and a
// pattern that would match one is refused here rather than quietly
// narrowed, so that the file says what the programs get.

// SecretVars are the variables the worker's secrets come from, each with
// the field that names it (slack.bot_token_env, repos[1].password_env).
// Every field whose YAML name ends in _env names one: that is how this
// package reads secrets, so a field added later is covered without a
// change here.
func (c *Config) SecretVars() map[string]string {
	out := map[string]string{}
	collectEnvFields(reflect.ValueOf(c).Elem(), "", out)
	return out
}

// SecretVarNames are the names of SecretVars, sorted.
func (c *Config) SecretVarNames() []string {
	vars := c.SecretVars()
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func collectEnvFields(v reflect.Value, at string, out map[string]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			collectEnvFields(v.Elem(), at, out)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			collectEnvFields(v.Index(i), fmt.Sprintf("%s[%d]", at, i), out)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name) // yaml.v3's default
			}
			field := name
			switch {
			case strings.Contains(opts, "inline"):
				field = at
			case at != "":
				field = at + "." + name
			}
			fv := v.Field(i)
			if strings.HasSuffix(name, "_env") && fv.Kind() == reflect.String {
				if n := fv.String(); n != "" {
					if _, seen := out[n]; !seen {
						out[n] = field
					}
				}
				continue
			}
			collectEnvFields(fv, field, out)
		}
	}
}

// validateEnv checks pulumi.env and every stacks[].env: each entry a
// pattern of variable names, none matching a variable that names a secret
// of the worker.
func (c *Config) validateEnv(bad func(string, ...any)) {
	secrets := c.SecretVars()
	names := c.SecretVarNames()
	check := func(at string, patterns []string) {
		for i, p := range patterns {
			field := fmt.Sprintf("%s[%d]", at, i)
			if _, err := path.Match(p, ""); err != nil || p == "" || strings.Contains(p, "=") {
				bad("%s %q is not a pattern of variable names: write a name (AWS_REGION) or a glob (AWS_*; *, ? and [A-Z] match)", field, p)
				continue
			}
			var matched []string
			for _, n := range names {
				if ok, _ := path.Match(p, n); ok {
					matched = append(matched, fmt.Sprintf("%s (%s)", n, secrets[n]))
				}
			}
			if len(matched) > 0 {
				bad("%s %q matches %s: variables that *_env fields name hold the worker's own secrets, which never reach repository code (the passphrase reaches the Pulumi CLI as PULUMI_CONFIG_PASSPHRASE already); narrow the pattern",
					field, p, strings.Join(matched, ", "))
			}
		}
	}
	check("pulumi.env", c.Pulumi.Env)
	for i, s := range c.Stacks {
		at := fmt.Sprintf("stacks[%d]", i)
		if s.Name != "" {
			at = fmt.Sprintf("stacks[%d] (%s)", i, s.Name)
		}
		check(at+".env", s.Env)
		check(at+".preview_env", s.PreviewEnv)
	}
}
