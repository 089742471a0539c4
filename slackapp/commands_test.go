package slackapp

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gate"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	stacks := []string{"api", "web-prod"}
	for name, tc := range map[string]struct {
		text string
		want command
		err  string
	}{
		"freeze a stack":          {text: "freeze web-prod incident 4711", want: command{verb: "freeze", stack: "web-prod", reason: "incident 4711"}},
		"freeze all until 2h":     {text: " Freeze ALL  release night until 2h", want: command{verb: "freeze", reason: "release night", until: now.Add(2 * time.Hour)}},
		"until a time, UTC":       {text: "freeze api db move until 2026-12-03T18:00", want: command{verb: "freeze", stack: "api", reason: "db move", until: time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)}},
		"unfreeze":                {text: "unfreeze web-prod all clear", want: command{verb: "unfreeze", stack: "web-prod", reason: "all clear"}},
		"override":                {text: "override 3f2a91c customer outage", want: command{verb: "override", run: "3f2a91c", reason: "customer outage"}},
		"empty":                   {text: "  ", err: "Usage:"},
		"help":                    {text: "help", err: "/changeops freeze STACK|all"},
		"unknown verb":            {text: "thaw web-prod now", err: `unknown command "thaw"`},
		"no reason":               {text: "freeze web-prod", err: "freeze needs a reason after web-prod"},
		"no target":               {text: "unfreeze", err: "unfreeze needs a target and a reason"},
		"unknown stack":           {text: "freeze web-staging oops", err: `stack "web-staging" is not in the configuration: name one of api, web-prod, or all`},
		"stack name bounded":      {text: "freeze " + strings.Repeat("x", 500) + " why", err: strings.Repeat("x", maxEcho-1) + "…"},
		"until unreadable":        {text: "freeze api why until soonish", err: `until "soonish": give a duration like 2h`},
		"until in the past":       {text: "freeze api why until 2026-12-01", err: "is not in the future"},
		"until only on freeze":    {text: "unfreeze api over until 2h", want: command{verb: "unfreeze", stack: "api", reason: "over until 2h"}},
		"reason too long":         {text: "freeze api " + strings.Repeat("r", maxReason+1), err: "the reason is 2001 bytes"},
		"text too long":           {text: "freeze api " + strings.Repeat("r ", maxCommandText), err: "keep it under 4000"},
		"not UTF-8":               {text: "freeze api \xff", err: "not valid UTF-8"},
		"override needs a reason": {text: "override 3f2a91c", err: "override needs a reason"},
		"run reference bounded":   {text: "override change/" + strings.Repeat("b", maxRunRef) + " why", err: "is not a run: give its ID"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := parseCommand(tc.text, now, stacks)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err = %v, want one saying %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err == "" && (got.verb != tc.want.verb || got.stack != tc.want.stack || got.run != tc.want.run ||
				got.reason != tc.want.reason || !got.until.Equal(tc.want.until)):
				t.Fatalf("parsed %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Freezing from Slack needs an approver of every stack covered, listed
// by Slack user, by people entry or through a user group; a stack without
// approvers needs a people entry.
func TestMayFreeze(t *testing.T) {
	t.Parallel()
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/usergroups.users.list", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"ok":true,"users":["U0CAROL"]}`))
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	api := slack.New("xoxb-test", slack.OptionAPIURL(srv.GetAPIURL()))
	a := &Approvals{
		People:    gate.New([]config.Person{{Name: "bob", Slack: []string{"U0BOB"}}, {Name: "erin", Slack: []string{"U0ERIN"}}}, "secret"),
		Directory: NewDirectory(api, time.Minute),
	}
	web := config.Stack{Name: "web", Approvers: []string{"bob", "S0OPS"}}
	api2 := config.Stack{Name: "api", Approvers: []string{"U0ERIN"}}
	auto := config.Stack{Name: "docs"}
	for name, tc := range map[string]struct {
		user        string
		stacks      []config.Stack
		person, via string
		err         string
	}{
		"by people entry":            {user: "U0BOB", stacks: []config.Stack{web}, person: "bob"},
		"through a user group":       {user: "U0CAROL", stacks: []config.Stack{web}, via: "S0OPS"},
		"as the Slack user":          {user: "U0ERIN", stacks: []config.Stack{api2, auto}, person: "erin"},
		"not an approver":            {user: "U0MALLORY", stacks: []config.Stack{web}, err: "U0MALLORY may not freeze stack web: only its approvers may (bob, S0OPS)"},
		"all needs every stack":      {user: "U0BOB", stacks: []config.Stack{web, api2}, err: "U0BOB may not freeze stack api"},
		"no approvers, not a person": {user: "U0CAROL", stacks: []config.Stack{auto}, err: "it has no approvers, and no people entry lists your Slack user"},
	} {
		t.Run(name, func(t *testing.T) {
			person, via, err := a.mayFreeze(context.Background(), tc.user, "freeze", tc.stacks)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err = %v, want one saying %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err == "" && (person != tc.person || via != tc.via):
				t.Fatalf("person %q via %q, want %q via %q", person, via, tc.person, tc.via)
			}
		})
	}
}

// The command endpoint checks Slack's signature before it reads anything,
// and the user it names.
func TestCommandsRefuseUnsigned(t *testing.T) {
	t.Parallel()
	a := &Approvals{SigningSecret: "s3cret", Logger: slog.New(slog.DiscardHandler)}
	body := "user_id=U0BOB&text=unfreeze+all+forged&response_url=http%3A%2F%2F127.0.0.1%3A1%2Fr"
	for name, h := range map[string]http.Header{
		"unsigned":     {},
		"other secret": signed("guess", body, time.Now()),
		"stale":        signed("s3cret", body, time.Now().Add(-6*time.Minute)),
	} {
		req := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
		req.Header = h
		rec := httptest.NewRecorder()
		a.Commands().ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: answered %d, want 401", name, rec.Code)
		}
	}
	// Signed, but naming no Slack user: refused before anything is done.
	for _, user := range []string{"bob", "U" + strings.Repeat("0", 40), ""} {
		body := "user_id=" + user + "&text=unfreeze+all+x"
		req := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
		req.Header = signed("s3cret", body, time.Now())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		a.Commands().ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("user %q: answered %d, want 400", user, rec.Code)
		}
	}
}

// FuzzCommand feeds the command parser arbitrary text: it never panics,
// a command it accepts names a known verb, a configured stack (or all)
// and a bounded reason.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{"freeze web incident", "freeze all why until 2h", "unfreeze web over", "override 3f2a91c outage", "until until until", "freeze", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, text string) {
		c, err := parseCommand(text, now, []string{"web"})
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("a refusal with no message")
			}
			return
		}
		switch {
		case c.verb != "freeze" && c.verb != "unfreeze" && c.verb != "override":
			t.Fatalf("verb %q", c.verb)
		case c.stack != "" && c.stack != "web":
			t.Fatalf("stack %q", c.stack)
		case strings.TrimSpace(c.reason) == "" || len(c.reason) > maxReason:
			t.Fatalf("reason %q", c.reason)
		}
	})
}
