package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func windowsConfig(ws ...Window) *Config {
	return &Config{Stacks: []Stack{{Name: "web"}, {Name: "db"}, {Name: "api"}}, Windows: ws}
}

// A deny rule on Friday 15:00-23:59 in Europe/Berlin closes at 15:00
// Berlin time on both sides of the change to summer time (2025-03-30),
// which is 14:00 UTC in winter and 13:00 UTC in summer, and opens at
// 23:59 Berlin time.
func TestWindowDenyFridayAcrossDST(t *testing.T) {
	t.Parallel()
	cfg := windowsConfig(Window{Name: "friday", Kind: WindowDeny, Stacks: []string{"web"},
		Days: []string{"fri"}, Start: "15:00", End: "23:59", TimeZone: "Europe/Berlin"})
	if err := cfg.validateOnlyWindows(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		at      string
		allowed bool
		opens   string
	}{
		{"2025-03-28T13:59:00Z", true, "2025-03-28T13:59:00Z"},  // 14:59 CET
		{"2025-03-28T14:00:00Z", false, "2025-03-28T22:59:00Z"}, // 15:00 CET: closed until 23:59 CET
		{"2025-03-28T22:58:00Z", false, "2025-03-28T22:59:00Z"},
		{"2025-03-28T22:59:00Z", true, "2025-03-28T22:59:00Z"},
		{"2025-04-04T13:30:00Z", false, "2025-04-04T21:59:00Z"}, // 15:30 CEST: closed until 23:59 CEST
		{"2025-04-04T12:59:00Z", true, "2025-04-04T12:59:00Z"},  // 14:59 CEST
		{"2025-04-04T13:00:00Z", false, "2025-04-04T21:59:00Z"}, // 15:00 CEST
		{"2025-10-24T13:00:00Z", false, "2025-10-24T21:59:00Z"}, // CEST, before the change back (2025-10-26)
		{"2025-10-31T13:30:00Z", true, "2025-10-31T13:30:00Z"},  // 14:30 CET
		{"2025-10-31T14:00:00Z", false, "2025-10-31T22:59:00Z"}, // 15:00 CET
		{"2025-04-02T13:30:00Z", true, "2025-04-02T13:30:00Z"},  // a Wednesday
	}
	for _, c := range cases {
		got := cfg.WindowAt([]string{"web"}, utc(c.at))
		if got.Allowed != c.allowed || !got.Opens.Equal(utc(c.opens)) {
			t.Errorf("at %s: allowed %v opens %s (%v), want %v opens %s", c.at, got.Allowed, got.Opens.UTC().Format(time.RFC3339), got.Closed, c.allowed, c.opens)
		}
		if !c.allowed && (len(got.Closed) != 1 || !strings.Contains(got.Closed[0], "deny window friday until Fri") || !strings.Contains(got.Closed[0], "(web)")) {
			t.Errorf("at %s: closed = %q, want the rule, its end and the stack", c.at, got.Closed)
		}
	}
	// Other stacks are not covered.
	if got := cfg.WindowAt([]string{"db"}, utc("2025-03-28T14:00:00Z")); !got.Allowed {
		t.Errorf("db: %+v, want allowed", got)
	}
}

// A night window that spans the change to summer time: a duration is
// elapsed time, an end is the wall clock.
func TestWindowAllowNightAcrossDST(t *testing.T) {
	t.Parallel()
	byDuration := windowsConfig(Window{Name: "night", Kind: WindowAllow, Stacks: []string{"db"},
		Cron: "0 22 * * *", Duration: Duration(8 * time.Hour), TimeZone: "Europe/Berlin"})
	byEnd := windowsConfig(Window{Name: "night", Kind: WindowAllow, Stacks: []string{"db"},
		Start: "22:00", End: "06:00", TimeZone: "Europe/Berlin"})
	for _, cfg := range []*Config{byDuration, byEnd} {
		if err := cfg.validateOnlyWindows(); err != nil {
			t.Fatal(err)
		}
	}
	// Saturday 22:00 CET is 21:00 UTC; eight hours later it is 07:00 CEST.
	for _, c := range []struct {
		cfg     *Config
		at      string
		allowed bool
		opens   string
	}{
		{byDuration, "2025-03-29T20:59:00Z", false, "2025-03-29T21:00:00Z"},
		{byDuration, "2025-03-30T04:59:00Z", true, "2025-03-30T04:59:00Z"},  // 06:59 CEST
		{byDuration, "2025-03-30T05:00:00Z", false, "2025-03-30T20:00:00Z"}, // 07:00 CEST: next at 22:00 CEST
		{byEnd, "2025-03-30T03:59:00Z", true, "2025-03-30T03:59:00Z"},       // 05:59 CEST
		{byEnd, "2025-03-30T04:00:00Z", false, "2025-03-30T20:00:00Z"},      // 06:00 CEST
	} {
		got := c.cfg.WindowAt([]string{"db"}, utc(c.at))
		if got.Allowed != c.allowed || !got.Opens.Equal(utc(c.opens)) {
			t.Errorf("%s at %s: allowed %v opens %s (%v), want %v opens %s", c.cfg.Windows[0].Cron+c.cfg.Windows[0].End, c.at,
				got.Allowed, got.Opens.UTC().Format(time.RFC3339), got.Closed, c.allowed, c.opens)
		}
	}
}

// Several stacks open together; allow and deny rules combine; a one-off
// period closes everything it covers; a rule that never opens again gives
// no date.
func TestWindowCombinations(t *testing.T) {
	t.Parallel()
	cfg := windowsConfig(
		Window{Name: "business", Kind: WindowAllow, Stacks: []string{"*"}, Days: []string{"mon", "tue", "wed", "thu", "fri"},
			Start: "09:00", End: "17:00", TimeZone: "Europe/Berlin"},
		Window{Name: "friday", Kind: WindowDeny, Stacks: []string{"w*"}, Days: []string{"fri"}, Start: "15:00", End: "23:59", TimeZone: "Europe/Berlin"},
		Window{Name: "holidays", Kind: WindowDeny, Stacks: []string{"*"}, From: "2025-12-20", Until: "2026-01-06", TimeZone: "Europe/Berlin"},
	)
	if err := cfg.validateOnlyWindows(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		stacks  []string
		at      string
		allowed bool
		opens   string
	}{
		{[]string{"api"}, "2025-06-13T13:30:00Z", true, "2025-06-13T13:30:00Z"},         // Fri 15:30 CEST: only web is denied
		{[]string{"api", "web"}, "2025-06-13T13:30:00Z", false, "2025-06-16T07:00:00Z"}, // web: Friday deny, then the weekend: Monday 09:00
		{[]string{"api"}, "2025-06-14T10:00:00Z", false, "2025-06-16T07:00:00Z"},        // Saturday
		{[]string{"api"}, "2025-12-22T10:00:00Z", false, "2026-01-07T08:00:00Z"},        // holidays, through Jan 6, then Wed 09:00 CET
	}
	for _, c := range cases {
		got := cfg.WindowAt(c.stacks, utc(c.at))
		if got.Allowed != c.allowed || !got.Opens.Equal(utc(c.opens)) {
			t.Errorf("%v at %s: allowed %v opens %s (%v), want %v opens %s", c.stacks, c.at, got.Allowed, got.Opens.UTC().Format(time.RFC3339), got.Closed, c.allowed, c.opens)
		}
	}
	past := windowsConfig(Window{Name: "once", Kind: WindowAllow, Stacks: []string{"web"}, From: "2020-01-01", Until: "2020-01-02", TimeZone: "UTC"})
	if got := past.WindowAt([]string{"web"}, utc("2025-01-01T00:00:00Z")); got.Allowed || !got.Opens.IsZero() || len(got.Closed) != 1 {
		t.Errorf("an allow window in the past: %+v, want closed with no opening", got)
	}
}

func (c *Config) validateOnlyWindows() error {
	var errs []string
	c.validateWindows(func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) })
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Each refusal names the rule and the field.
func TestWindowRefusals(t *testing.T) {
	t.Parallel()
	base := Window{Name: "w", Kind: WindowDeny, Stacks: []string{"web"}, Days: []string{"fri"}, Start: "15:00", End: "23:59", TimeZone: "Europe/Berlin"}
	with := func(f func(*Window)) Window { w := base; w.Stacks = []string{"web"}; f(&w); return w }
	cronOf := func(spec string, d time.Duration) func(*Window) {
		return func(w *Window) { w.End, w.Start, w.Days, w.Cron, w.Duration = "", "", nil, spec, Duration(d) }
	}
	cases := []struct {
		name string
		w    Window
		want string
	}{
		{"bad time zone", with(func(w *Window) { w.TimeZone = "Europe/Berlni" }), `windows[0] (w).time_zone "Europe/Berlni" is not an IANA time zone`},
		{"no time zone", with(func(w *Window) { w.TimeZone = "" }), "windows[0] (w).time_zone is empty"},
		{"local", with(func(w *Window) { w.TimeZone = "Local" }), `windows[0] (w).time_zone "Local" is not an IANA time zone`},
		{"zero duration", with(cronOf("0 22 * * *", 0)), "windows[0] (w).duration is zero"},
		{"zero duration days", with(func(w *Window) { w.End = "" }), "windows[0] (w).duration is zero and there is no end"},
		{"negative duration", with(func(w *Window) { w.End, w.Duration = "", Duration(-time.Hour) }), "windows[0] (w).duration -1h0m0s is negative"},
		{"overlapping", with(cronOf("0 * * * *", 2*time.Hour)), "windows[0] (w).duration: the window starting"},
		{"overlapping days", with(func(w *Window) { w.Days, w.End, w.Duration = []string{"mon", "tue"}, "", Duration(25*time.Hour) }), "its windows overlap"},
		{"unknown stack", with(func(w *Window) { w.Stacks = []string{"wbe"} }), `windows[0] (w).stacks[0] "wbe" matches no stack: name one of api, db, web`},
		{"bad glob", with(func(w *Window) { w.Stacks = []string{"web-["} }), `windows[0] (w).stacks[0] "web-[" is not a stack name or glob`},
		{"no stacks", with(func(w *Window) { w.Stacks = nil }), "windows[0] (w).stacks is empty"},
		{"kind", with(func(w *Window) { w.Kind = "block" }), `windows[0] (w).kind "block": use allow`},
		{"bad day", with(func(w *Window) { w.Days = []string{"fri", "frieday"} }), `windows[0] (w).days: "frieday" is not a day`},
		{"bad start", with(func(w *Window) { w.Start = "3pm" }), `windows[0] (w).start "3pm": want a time of day`},
		{"bad cron", with(cronOf("0 25 * * *", time.Hour)), `windows[0] (w).cron "0 25 * * *"`},
		{"cron and days", with(func(w *Window) { w.Cron = "0 1 * * *" }), "windows[0] (w).cron and days/start both say when"},
		{"never", with(cronOf("0 0 30 2 *", time.Hour)), `windows[0] (w).cron "0 0 30 2 *" never comes`},
		{"cron zone", with(cronOf("CRON_TZ=UTC 0 1 * * *", time.Hour)), "set time_zone instead"},
		{"nothing", with(func(w *Window) { w.End, w.Start, w.Days = "", "", nil }), "windows[0] (w).cron, days and from/until are empty"},
		{"until before from", with(func(w *Window) { w.From, w.Until = "2025-12-24", "2025-12-20" }), "windows[0] (w).until 2025-12-20 is not after from 2025-12-24"},
		{"bad date", with(func(w *Window) { w.From, w.Until, w.End, w.Start, w.Days = "24.12.2025", "2025-12-26", "", "", nil }), `windows[0] (w).from "24.12.2025": want a date like 2025-12-24`},
	}
	for _, c := range cases {
		err := windowsConfig(c.w).validateOnlyWindows()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	dup := windowsConfig(base, base)
	if err := dup.validateOnlyWindows(); err == nil || !strings.Contains(err.Error(), `windows[1] (w).name "w" is used twice`) {
		t.Errorf("duplicate names: %v", err)
	}
	// Overlapping rules are fine: allow rules add up and deny wins.
	ok := windowsConfig(base, with(func(w *Window) { w.Name, w.Kind = "w2", WindowAllow }))
	if err := ok.validateOnlyWindows(); err != nil {
		t.Errorf("an allow and a deny rule over the same time: %v", err)
	}
}

// The windows block as written in changeops.yaml.
func TestWindowsYAML(t *testing.T) {
	t.Parallel()
	doc := good + `windows:
  - name: friday-afternoon
    kind: deny
    stacks: ["*"]
    days: [fri]
    start: "15:00"
    end: "23:59"
    time_zone: Europe/Berlin
  - name: nights
    kind: allow
    stacks: [web]
    cron: "0 22 * * mon-thu"
    duration: 8h
    time_zone: Europe/Berlin
  - name: holidays
    kind: deny
    stacks: ["*"]
    from: 2025-12-20
    until: 2026-01-06
    time_zone: Europe/Berlin
`
	cfg, err := Parse([]byte(doc), "/etc/changeops", withPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Windows) != 3 || cfg.Windows[1].Duration.D() != 8*time.Hour {
		t.Fatalf("windows = %+v", cfg.Windows)
	}
	if got := cfg.WindowAt([]string{"web"}, utc("2025-06-11T21:00:00Z")); !got.Allowed { // Wed 23:00 CEST
		t.Errorf("Wednesday night: %+v, want allowed", got)
	}
	_, err = Parse([]byte(strings.Replace(doc, "Europe/Berlin", "Berlin", 1)), "/etc/changeops", withPassphrase)
	if err == nil || !strings.Contains(err.Error(), `windows[0] (friday-afternoon).time_zone "Berlin" is not an IANA time zone`) {
		t.Errorf("bad zone in YAML: %v", err)
	}
}
