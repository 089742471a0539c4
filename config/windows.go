package config

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	// The image need not ship zoneinfo: every time_zone resolves from the
	// copy embedded in the binary when the system has none.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Kinds of change window.
const (
	WindowAllow = "allow"
	WindowDeny  = "deny"
)

// WindowHorizon is how far ahead the next opening of a window is looked
// for: a change whose stacks have no opening within it waits without a
// date (and is checked again as the configuration may change).
const WindowHorizon = 366 * 24 * time.Hour

// Window is one rule of windows: when the stacks it names may (allow) or
// may not (deny) apply. A stack with allow rules applies only inside one
// of them; a deny rule closes whatever it covers, allow rules included.
// Only the apply waits: plans and approvals happen at any time.
//
// When is a recurrence, a one-off period, or a recurrence bounded by a
// period:
//   - cron: a cron expression (minute hour day month weekday, or @daily
//     and the like) for the start of each window, and duration;
//   - days and start (HH:MM), with end (HH:MM; an end before the start
//     is the next day) or duration;
//   - from and until alone: one period (a freeze over the holidays);
//     with a recurrence they bound it.
//
// Times are read in TimeZone, an IANA name such as Europe/Berlin: a
// window at 15:00 opens at 15:00 there, in summer and in winter.
type Window struct {
	Name string `yaml:"name"`
	// Stacks are stack names or globs (path.Match: web-*, *).
	Stacks   []string `yaml:"stacks"`
	Kind     string   `yaml:"kind"`
	Cron     string   `yaml:"cron"`
	Days     []string `yaml:"days"`
	Start    string   `yaml:"start"`
	End      string   `yaml:"end"`
	Duration Duration `yaml:"duration"`
	TimeZone string   `yaml:"time_zone"`
	// From and Until are dates (2025-12-20; an until date includes its
	// day) or times (2025-12-20T18:00) in TimeZone.
	From  string `yaml:"from"`
	Until string `yaml:"until"`
}

// Covers says whether the rule names the stack.
func (w Window) Covers(stack string) bool {
	for _, p := range w.Stacks {
		if ok, _ := path.Match(p, stack); ok {
			return true
		}
	}
	return false
}

// WindowCheck answers whether stacks may apply at a time, and if not when
// they may next.
type WindowCheck struct {
	Allowed bool
	// Opens is the earliest time from the one asked about at which every
	// stack may apply; zero when there is none within WindowHorizon.
	Opens time.Time
	// Closed says which rules close the stacks now, for people:
	// "deny window friday-afternoon (web) until Fri 23:59 CET".
	Closed []string
}

// WindowAt checks stacks against the windows at t: allowed, or closed by
// which rules and open again when.
func (c *Config) WindowAt(stacks []string, t time.Time) WindowCheck {
	rules := map[string][]*rule{}
	for _, w := range c.Windows {
		r, err := w.compile()
		if err != nil {
			continue // Validate refused it; a config built in Go may skip that
		}
		for _, s := range stacks {
			if w.Covers(s) {
				rules[s] = append(rules[s], r)
			}
		}
	}
	var res WindowCheck
	at := t
	for round := 0; ; round++ {
		var next time.Time
		blocked := false
		for _, s := range stacks {
			until, why, closed := closedUntil(rules[s], at)
			if !closed {
				continue
			}
			blocked = true
			if round == 0 {
				res.Closed = append(res.Closed, fmt.Sprintf("%s (%s)", why, s))
			}
			if until.IsZero() {
				return res // never within the horizon
			}
			if until.After(next) {
				next = until
			}
		}
		if !blocked {
			res.Allowed = round == 0
			res.Opens = at
			return res
		}
		// Every round moves past a boundary; a schedule that still
		// closes the stacks a year on has no opening worth a date.
		if next.Sub(t) > WindowHorizon || round > 10000 {
			return res
		}
		at = next
	}
}

// closedUntil says whether one stack's rules close it at t, why, and until
// when at least (zero: no opening within the horizon).
func closedUntil(rules []*rule, t time.Time) (until time.Time, why string, closed bool) {
	var allows []*rule
	for _, r := range rules {
		if r.w.Kind == WindowAllow {
			allows = append(allows, r)
			continue
		}
		if end, ok := r.containing(t); ok {
			if !closed || end.After(until) {
				until, why = end, fmt.Sprintf("deny window %s until %s", r.w.Name, end.In(r.loc).Format("Mon 2006-01-02 15:04 MST"))
			}
			closed = true
		}
	}
	if closed || len(allows) == 0 {
		return until, why, closed
	}
	var names []string
	for _, r := range allows {
		if _, ok := r.containing(t); ok {
			return time.Time{}, "", false
		}
		names = append(names, r.w.Name)
		if start, ok := r.nextStart(t); ok && (until.IsZero() || start.Before(until)) {
			until = start
		}
	}
	why = "outside the allow windows " + strings.Join(names, ", ")
	if len(names) == 1 {
		why = "outside the allow window " + names[0]
	}
	if !until.IsZero() {
		why += fmt.Sprintf(" (opens %s)", until.Format(time.RFC3339))
	}
	return until, why, true
}

// rule is a Window ready to compute with.
type rule struct {
	w     Window
	loc   *time.Location
	sched *cron.SpecSchedule // nil for a one-off period
	// from and until bound the rule; zero is unbounded.
	from, until time.Time
	// endH, endM: the wall-clock end of a days rule with end; -1 without.
	endH, endM int
}

var weekdays = map[string]string{
	"sun": "0", "mon": "1", "tue": "2", "wed": "3", "thu": "4", "fri": "5", "sat": "6",
	"sunday": "0", "monday": "1", "tuesday": "2", "wednesday": "3", "thursday": "4", "friday": "5", "saturday": "6",
}

// compile parses the rule. Its errors say what is wrong with which field
// (without the windows[i] prefix, which Validate adds).
func (w Window) compile() (*rule, error) {
	if w.TimeZone == "" {
		return nil, fmt.Errorf("time_zone is empty: name an IANA time zone like Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil || w.TimeZone == "Local" {
		return nil, fmt.Errorf("time_zone %q is not an IANA time zone: use a name like Europe/Berlin, America/New_York or UTC", w.TimeZone)
	}
	r := &rule{w: w, loc: loc, endH: -1}
	if r.from, err = parseWhen(w.From, loc, false); err != nil {
		return nil, fmt.Errorf("from %q: %w", w.From, err)
	}
	if r.until, err = parseWhen(w.Until, loc, true); err != nil {
		return nil, fmt.Errorf("until %q: %w", w.Until, err)
	}
	if !r.from.IsZero() && !r.until.IsZero() && !r.until.After(r.from) {
		return nil, fmt.Errorf("until %s is not after from %s", w.Until, w.From)
	}
	if w.Duration < 0 {
		return nil, fmt.Errorf("duration %s is negative: give the window's length, like 8h", w.Duration.D())
	}
	spec := strings.TrimSpace(w.Cron)
	switch {
	case spec != "" && (len(w.Days) > 0 || w.Start != ""):
		return nil, fmt.Errorf("cron and days/start both say when: use one")
	case spec != "":
		if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
			return nil, fmt.Errorf("cron %q names a time zone: set time_zone instead", w.Cron)
		}
		if w.End != "" {
			return nil, fmt.Errorf("end goes with days and start; a cron window gives its length as duration")
		}
		if w.Duration == 0 {
			return nil, fmt.Errorf("duration is zero: a cron window needs a length, like 8h")
		}
	case len(w.Days) > 0 || w.Start != "":
		h, m, err := clock(w.Start)
		if err != nil {
			return nil, fmt.Errorf("start %q: %w", w.Start, err)
		}
		var dows []string
		for _, d := range w.Days {
			n, ok := weekdays[strings.ToLower(d)]
			if !ok {
				return nil, fmt.Errorf("days: %q is not a day: use mon, tue, wed, thu, fri, sat, sun", d)
			}
			dows = append(dows, n)
		}
		if len(dows) == 0 {
			dows = []string{"*"} // start alone: every day
		}
		switch {
		case w.End != "" && w.Duration != 0:
			return nil, fmt.Errorf("end and duration both say when the window closes: use one")
		case w.End != "":
			if r.endH, r.endM, err = clock(w.End); err != nil {
				return nil, fmt.Errorf("end %q: %w", w.End, err)
			}
			if r.endH == h && r.endM == m {
				return nil, fmt.Errorf("end %s is the start: the window would be empty", w.End)
			}
		case w.Duration == 0:
			return nil, fmt.Errorf("duration is zero and there is no end: give the window's length (duration: 8h) or its end (end: \"17:00\")")
		}
		spec = fmt.Sprintf("%d %d * * %s", m, h, strings.Join(dows, ","))
	default:
		if r.from.IsZero() || r.until.IsZero() {
			return nil, fmt.Errorf("cron, days and from/until are empty: give a recurrence (cron, or days and start) or a period (from and until)")
		}
		if w.Duration != 0 || w.End != "" {
			return nil, fmt.Errorf("duration and end go with a recurrence; a period from/until needs neither")
		}
		return r, nil
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %v (minute hour day-of-month month day-of-week, like \"0 22 * * mon-fri\")", spec, err)
	}
	ss, ok := s.(*cron.SpecSchedule)
	if !ok { // @every: not a calendar
		return nil, fmt.Errorf("cron %q is an interval, not a calendar time: write it like \"0 */2 * * *\"", spec)
	}
	ss.Location = loc
	r.sched = ss
	return r, nil
}

// clock reads HH:MM.
func clock(s string) (h, m int, err error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, 0, fmt.Errorf("want a time of day like 09:00 or 23:59")
	}
	return t.Hour(), t.Minute(), nil
}

// parseWhen reads a date or a time in loc; an until date means the end of
// its day.
func parseWhen(s string, loc *time.Location, endOfDay bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	t, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("want a date like 2025-12-24 or a time like 2025-12-24T18:00 (in time_zone)")
	}
	if endOfDay {
		t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
	}
	return t, nil
}

// end is when the window that starts at s closes: at the next wall-clock
// end in the rule's zone, or after the duration.
func (r *rule) end(s time.Time) time.Time {
	if r.endH < 0 {
		return s.Add(r.w.Duration.D())
	}
	l := s.In(r.loc)
	e := time.Date(l.Year(), l.Month(), l.Day(), r.endH, r.endM, 0, 0, r.loc)
	if !e.After(s) {
		e = time.Date(l.Year(), l.Month(), l.Day()+1, r.endH, r.endM, 0, 0, r.loc)
	}
	return e
}

// lookback is the longest a window of the rule lasts.
func (r *rule) lookback() time.Duration {
	if r.endH >= 0 {
		return 26 * time.Hour // up to a day, and a DST hour
	}
	return r.w.Duration.D()
}

// bound clips a window to from/until; ok is false when nothing is left.
func (r *rule) bound(s, e time.Time) (time.Time, time.Time, bool) {
	if !r.from.IsZero() && s.Before(r.from) {
		s = r.from
	}
	if !r.until.IsZero() && e.After(r.until) {
		e = r.until
	}
	return s, e, e.After(s)
}

// containing says whether a window of the rule holds t, and when the
// last window holding it ends.
func (r *rule) containing(t time.Time) (end time.Time, ok bool) {
	if r.sched == nil {
		return r.until, !t.Before(r.from) && t.Before(r.until)
	}
	// Occurrences that began within the longest window before t;
	// Validate refuses rules whose windows overlap, so this is one or two.
	for s, n := r.sched.Next(t.Add(-r.lookback()-time.Second)), 0; !s.IsZero() && !s.After(t) && n < 1000; s, n = r.sched.Next(s), n+1 {
		bs, be, in := r.bound(s, r.end(s))
		if in && !t.Before(bs) && t.Before(be) && be.After(end) {
			end, ok = be, true
		}
	}
	return end, ok
}

// nextStart is when the rule's next window after t begins.
func (r *rule) nextStart(t time.Time) (time.Time, bool) {
	if r.sched == nil {
		return r.from, r.from.After(t)
	}
	if !r.until.IsZero() && !t.Before(r.until) {
		return time.Time{}, false
	}
	if r.from.After(t) {
		// A window already running at from opens with the period.
		if _, ok := r.containing(r.from); ok {
			return r.from, true
		}
		t = r.from
	}
	for s, n := r.sched.Next(t), 0; !s.IsZero() && n < 1000; s, n = r.sched.Next(s), n+1 {
		if !r.until.IsZero() && !s.Before(r.until) {
			return time.Time{}, false
		}
		if _, _, in := r.bound(s, r.end(s)); in {
			return s, true
		}
	}
	return time.Time{}, false
}

// validateWindows refuses a rule that cannot be computed, names no
// configured stack, or whose own windows overlap (a duration longer than
// the time between two starts, which is never what was meant: say it
// with a longer duration or fewer starts). Rules may overlap each other:
// allow rules add up, and deny wins.
func (c *Config) validateWindows(bad func(string, ...any)) {
	names := map[string]bool{}
	for i, w := range c.Windows {
		at := fmt.Sprintf("windows[%d]", i)
		if w.Name != "" {
			at = fmt.Sprintf("windows[%d] (%s)", i, w.Name)
		}
		checkName(at, "name each window, for messages and status", w.Name, names, bad)
		if w.Kind != WindowAllow && w.Kind != WindowDeny {
			bad("%s.kind %q: use allow (apply only inside) or deny (never apply inside)", at, w.Kind)
		}
		if len(w.Stacks) == 0 {
			bad("%s.stacks is empty: list the stacks it applies to (names or globs like web-*; \"*\" for all)", at)
		}
		for j, p := range w.Stacks {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				bad("%s.stacks[%d] %q is not a stack name or glob: use forms like web-prod, web-* or *", at, j, p)
				continue
			}
			if !slices.ContainsFunc(c.Stacks, func(s Stack) bool { ok, _ := path.Match(p, s.Name); return ok }) {
				bad("%s.stacks[%d] %q matches no stack: name one of %s", at, j, p, strings.Join(c.StackNames(), ", "))
			}
		}
		r, err := w.compile()
		if err != nil {
			bad("%s.%v", at, err) // each error starts with its field
			continue
		}
		if r.sched != nil && r.sched.Next(time.Now()).IsZero() {
			bad("%s.cron %q never comes (no such date within five years): check the day and month", at, w.Cron)
			continue
		}
		if s, next, ok := r.overlap(time.Now()); ok {
			bad("%s.duration: the window starting %s lasts %s, past the next start %s: its windows overlap; shorten it or start less often",
				at, s.In(r.loc).Format("Mon 2006-01-02 15:04 MST"), r.end(s).Sub(s), next.In(r.loc).Format("Mon 15:04 MST"))
		}
	}
}

// overlap finds a window of the rule that lasts past the next start,
// among the starts of a year from t.
func (r *rule) overlap(t time.Time) (s, next time.Time, ok bool) {
	if r.sched == nil {
		return s, next, false
	}
	if r.from.After(t) {
		t = r.from
	}
	s = r.sched.Next(t)
	for n := 0; n < 5000 && !s.IsZero() && s.Sub(t) < WindowHorizon; n++ {
		next = r.sched.Next(s)
		if !next.IsZero() && r.end(s).After(next) {
			return s, next, true
		}
		s = next
	}
	return time.Time{}, time.Time{}, false
}
