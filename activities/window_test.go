package activities

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changeops/changeops/config"
)

// The Window activity answers from the configuration's windows (with no
// Temporal, there are no freezes to read).
func TestWindowActivity(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Stacks: []config.Stack{{Name: "web"}, {Name: "db"}}, Windows: []config.Window{
		{Name: "always", Kind: config.WindowAllow, Stacks: []string{"db"}, Start: "00:00", Duration: config.Duration(24 * time.Hour), TimeZone: "UTC"},
		{Name: "century", Kind: config.WindowDeny, Stacks: []string{"web"}, From: "2000-01-01", Until: "2199-12-31", TimeZone: "UTC"},
	}}
	a := &Activities{Config: cfg}
	open, err := a.Window(context.Background(), WindowInput{RunID: "r", Stacks: []string{"db"}})
	if err != nil || !open.Allowed || open.CheckedAt.IsZero() {
		t.Fatalf("db: %+v, %v; want allowed", open, err)
	}
	closed, err := a.Window(context.Background(), WindowInput{RunID: "r", Stacks: []string{"db", "web"}})
	if err != nil || closed.Allowed || !closed.Next.IsZero() || len(closed.Closed) != 1 || !strings.Contains(closed.Closed[0], "deny window century") {
		t.Fatalf("db and web: %+v, %v; want closed by century with no opening in sight", closed, err)
	}
}

func TestFreezesHolding(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	all := Freeze{Reason: "release", By: "bob", At: now.Add(-time.Hour)}
	web := Freeze{Stack: "web", Reason: "incident", By: "carol", At: now.Add(-time.Hour), Until: now.Add(time.Hour)}
	past := Freeze{Stack: "db", Reason: "old", By: "carol", At: now.Add(-2 * time.Hour), Until: now}
	st := FreezesState{Freezes: []Freeze{all, web, past}}
	if got := st.Holding([]string{"db"}, now); len(got) != 1 || got[0].Reason != "release" {
		t.Errorf("db: %+v, want only the freeze of every stack (db's ran out)", got)
	}
	if got := st.Holding([]string{"web"}, now); len(got) != 2 {
		t.Errorf("web: %+v, want both", got)
	}
	if got := (FreezesState{Freezes: []Freeze{web}}).Holding([]string{"api"}, now); len(got) != 0 {
		t.Errorf("api: %+v, want none", got)
	}
	if s := web.String(); !strings.Contains(s, "stack web frozen by carol since 2026-03-01T11:00:00Z: incident (until 2026-03-01T13:00:00Z)") {
		t.Errorf("String = %q", s)
	}
}
