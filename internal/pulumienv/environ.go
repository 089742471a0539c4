package pulumienv

import (
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
)

// What repository code sees. A stack's program (and its Pulumi.yaml's
// runtime options), the language host, the providers and a stack's
// `command` checks all run code from the repository, before anyone
// approves. They get an environment built here, never the worker's own:
//
//   - baseVars, read from the worker's environment;
//   - for the Pulumi CLI, Vars (PULUMI_HOME, the backend, the passphrase
//     and the service's access token when set, the plugin switches and a
//     PATH that starts with the CLI's folder);
//   - the variables matched by pulumi.env and the stack's stacks[].env,
//     and those the state backend reads its credentials from
//     (backendPatterns; the CLI needs them, and passes its environment on
//     to the program);
//
// and never a variable that Deny names (the worker's own secrets, every
// *_env field of the config), nor an allowed one holding the value of one
// of them.

// baseVars are what any program expects to find: where programs are
// (PATH), whose session it is (HOME, USER, LOGNAME; HOME is also where
// tools keep their configuration), where temporary files go (TMPDIR), and
// how text and time are shown (LANG, LC_*, TZ). None of them holds a
// secret. Proxies (which may carry a password in their URL), CA bundles and
// cloud credentials are not here: pulumi.env lists those a deployment
// needs.
var baseVars = []string{"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_*", "TZ"}

// backendPatterns are the variables the state backend at url reads its
// credentials from: the CLI opens the backend itself, so without them
// nothing works, and whatever the CLI has its plugins and the program get
// too (a limit of the engine's design, stated in docs/security.md).
func backendPatterns(url string) []string {
	scheme, _, _ := strings.Cut(url, "://")
	switch scheme {
	case "postgres", "postgresql":
		return []string{"PG*"} // libpq's PGPASSWORD, PGSSLMODE, ...
	case "s3":
		return []string{"AWS_*"}
	case "gs":
		return []string{"GOOGLE_*"}
	case "azblob":
		return []string{"AZURE_*"}
	}
	// A Pulumi service (http, https) reads PULUMI_ACCESS_TOKEN, which the
	// CLI gets from pulumi.access_token_env (Vars), never from the
	// worker's environment.
	return nil
}

// matches says whether the variable name matches one of patterns.
func matches(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// environ is the worker's environment as a map (the last of repeated names
// wins, as in exec).
func (e Env) environ() map[string]string {
	src := e.Environ
	if src == nil {
		src = os.Environ()
	}
	out := make(map[string]string, len(src))
	for _, kv := range src {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// Base is the base set of the worker's environment (baseVars) every child
// process gets.
func (e Env) Base() map[string]string {
	out := map[string]string{}
	for k, v := range e.environ() {
		if matches(baseVars, k) && !slices.Contains(e.Deny, k) {
			out[k] = v
		}
	}
	return out
}

// allowed returns the variables of the worker's environment that patterns
// match, besides Base, less the worker's secrets: the variables Deny names, and those
// holding the same value as one of them (a secret copied under another
// name, such as a git token also exported as GITHUB_TOKEN), which it names
// in withheld.
func (e Env) allowed(patterns []string) (vars map[string]string, withheld []string) {
	env := e.environ()
	secret := map[string]bool{}
	for _, name := range e.Deny {
		if v := env[name]; v != "" {
			secret[v] = true
		}
	}
	vars = map[string]string{}
	for k, v := range env {
		switch {
		case !matches(patterns, k) || matches(baseVars, k) || slices.Contains(e.Deny, k):
			// Base has its own (none of them secret).
		case secret[v]:
			withheld = append(withheld, k)
		default:
			vars[k] = v
		}
	}
	sort.Strings(withheld)
	return vars, withheld
}

// stackPatterns are the patterns of a stack's programs and providers.
func (e Env) stackPatterns(stackEnv []string) []string {
	return append(append(slices.Clone(e.Allow), stackEnv...), backendPatterns(e.BackendURL)...)
}

// Withheld names the variables pulumi.env, stackEnv or the backend allow
// that a stack does not get because each holds the value of a worker
// secret; the worker warns about them at start.
func (e Env) Withheld(stackEnv []string) []string {
	_, w := e.allowed(e.stackPatterns(stackEnv))
	return w
}

// StackVars is the environment a stack's Pulumi CLI calls add to Base: the
// variables pulumi.env (Allow), the stack's own patterns and the backend's
// credentials match, then Vars over them.
func (e Env) StackVars(stackEnv []string) map[string]string {
	out, _ := e.allowed(e.stackPatterns(stackEnv))
	maps.Copy(out, e.Vars())
	return out
}

// PreviewVars is the environment of a pull request's preview: Vars (the
// engine needs the state backend, and the passphrase to read the stack's
// configuration) and the backend's credentials, but none of pulumi.env or
// the stack's env, whose cloud credentials deploy: only the variables
// previewEnv (stacks[].preview_env) names, read-only credentials by intent.
// A pull request's code is not reviewed when it runs.
func (e Env) PreviewVars(previewEnv []string) map[string]string {
	out, _ := e.allowed(append(slices.Clone(previewEnv), backendPatterns(e.BackendURL)...))
	maps.Copy(out, e.Vars())
	return out
}

// CheckEnv is the environment of a stack's `command` checks, before their
// outputs: Base and the variables pulumi.env and the stack's patterns
// match. No Pulumi settings: a check needs neither the passphrase nor the
// state backend.
func (e Env) CheckEnv(stackEnv []string) []string {
	env := e.Base()
	vars, _ := e.allowed(append(slices.Clone(e.Allow), stackEnv...))
	maps.Copy(env, vars)
	return List(env)
}

// List is env as NAME=value lines, sorted, then extra in its order (later
// lines win in exec).
func List(env map[string]string, extra ...string) []string {
	out := make([]string, 0, len(env)+len(extra))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return append(out, extra...)
}
