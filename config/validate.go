package config

import (
	"net/url"
	"strings"
	"time"
)

// Refusals of values that parse but would do harm or nonsense later:
// credentials in a repository URL, a stack folder reaching outside the
// repository, negative limits, empty entries and unusable checks. Each
// names the field and the fix, and never echoes a password.

// checkRepoURL refuses credentials in a repository URL: the URL reaches
// logs, the watcher's summary and errors posted to Slack. In an http(s)
// URL any user info is refused (a forge token is often written as the user
// name alone); other schemes may name a user (ssh://git@host/…, the
// scp-like git@host:org/repo), never a password.
func checkRepoURL(at, raw string, bad func(string, ...any)) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return // a path, or scp-like user@host:path, which has no password
	}
	authority, _, _ := strings.Cut(rest, "/")
	user, _, hasUser := cutLast(authority, "@")
	if !hasUser {
		return
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
		bad("%s.url carries credentials (user info before @): remove them from the URL and set %s.username_env and %s.password_env to the variables holding them", at, at, at)
	default:
		if strings.Contains(user, ":") {
			bad("%s.url carries a password: remove it from the URL; use an SSH key, or an http(s) URL with %s.username_env and %s.password_env", at, at, at)
		}
	}
}

// cutLast is strings.Cut at the last sep: a password may itself hold an @.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// hasDotDot says whether a slash- or backslash-separated path has a ..
// segment anywhere.
func hasDotDot(p string) bool {
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return true
		}
	}
	return false
}

// validateLimits refuses negative durations and sizes outside the stacks
// (which Stack.validateFields checks) and HTTP listener settings that
// cannot work.
func (c *Config) validateLimits(bad func(string, ...any)) {
	nonNegative("temporal.worker_stop_timeout", c.Temporal.WorkerStopTimeout.D(), bad)
	if c.Webhooks.MaxBody < 0 {
		bad("webhooks.max_body %d is negative: use a size in bytes (default %d), or leave it out", c.Webhooks.MaxBody, DefaultMaxBody)
	}
	if c.HTTP.MaxConcurrent < 0 {
		bad("http.max_concurrent %d is negative: use the number of request bodies read at once (default %d), or leave it out", c.HTTP.MaxConcurrent, DefaultMaxConcurrent)
	}
	if c.HTTP.MetricsListen != "" && c.HTTP.MetricsListen == c.HTTP.Listen {
		bad("http.metrics_listen %s is also http.listen: give /metrics another address (like 127.0.0.1:9090), or leave metrics_listen out to serve it on http.listen", c.HTTP.MetricsListen)
	}
}

// validateFields refuses a stack's negative timeouts and unusable
// verification checks.
func (s Stack) validateFields(at string, bad func(string, ...any)) {
	nonNegative(at+".approval_timeout", s.ApprovalTimeout.D(), bad)
	nonNegative(at+".verify_timeout", s.VerifyTimeout.D(), bad)
	for j, ch := range s.Verify {
		if len(ch.Command) > 0 && strings.TrimSpace(ch.Command[0]) == "" {
			bad("%s.verify[%d].command[0] is empty: name the program to run first, like [./check.sh, --fast]", at, j)
		}
		if ch.HTTP == nil {
			continue
		}
		if ch.HTTP.URL != "" {
			u, err := url.Parse(ch.HTTP.URL)
			switch {
			case err != nil:
				// url.Parse's error quotes the URL, which may hold a password.
				bad("%s.verify[%d].http.url is not a URL: write it like https://web.example.com/healthz", at, j)
			case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				bad("%s.verify[%d].http.url %q is not an absolute http(s) URL: write it like https://web.example.com/healthz", at, j, u.Redacted())
			}
		}
		if ch.HTTP.Status < 100 || ch.HTTP.Status > 599 {
			bad("%s.verify[%d].http.status %d is not an HTTP status: use one from 100 to 599 (default 200)", at, j, ch.HTTP.Status)
		}
	}
}

func nonNegative(field string, d time.Duration, bad func(string, ...any)) {
	if d < 0 {
		bad("%s %s is negative: use a positive duration like 30s or 24h, or leave it out for the default", field, d)
	}
}
