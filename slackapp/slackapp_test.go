package slackapp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/changeops/changeops/internal/notify"
)

func signed(secret, body string, at time.Time) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", ts)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

func TestVerify(t *testing.T) {
	const body = "payload=%7B%7D"
	now := time.Now()
	for name, tc := range map[string]struct {
		h    http.Header
		want string // "" for accepted
	}{
		"signed now":        {signed("s3cret", body, now), ""},
		"other secret":      {signed("guess", body, now), "bad signature"},
		"six minutes old":   {signed("s3cret", body, now.Add(-6*time.Minute)), "more than five minutes"},
		"six minutes ahead": {signed("s3cret", body, now.Add(6*time.Minute)), "more than five minutes"},
		"unsigned":          {http.Header{}, "not signed by Slack"},
	} {
		t.Run(name, func(t *testing.T) {
			err := verify(tc.h, []byte(body), "s3cret")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("error %q leaks the secret", err)
			}
		})
	}
	// The body is part of the signature.
	if err := verify(signed("s3cret", body, now), []byte(body+"x"), "s3cret"); err == nil {
		t.Fatal("a changed body was accepted")
	}
}

// slackAPI is a slacktest server whose handlers the test gives, counting
// calls per method.
type slackAPI struct {
	srv   *slacktest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newSlackAPI(t *testing.T, handlers map[string]func(w http.ResponseWriter, r *http.Request)) *slackAPI {
	t.Helper()
	api := &slackAPI{calls: map[string]int{}}
	api.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		for path, h := range handlers {
			c.Handle(path, func(w http.ResponseWriter, r *http.Request) {
				api.mu.Lock()
				api.calls[path]++
				api.mu.Unlock()
				_ = r.ParseForm()
				w.Header().Set("Content-Type", "application/json")
				h(w, r)
			})
		}
	})
	api.srv.Start()
	t.Cleanup(api.srv.Stop)
	return api
}

func (a *slackAPI) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[path]
}

func TestDirectoryCachesWithinTTL(t *testing.T) {
	fail := false
	api := newSlackAPI(t, map[string]func(http.ResponseWriter, *http.Request){
		"/usergroups.users.list": func(w http.ResponseWriter, r *http.Request) {
			if fail {
				fmt.Fprint(w, `{"ok":false,"error":"missing_scope"}`)
				return
			}
			fmt.Fprint(w, `{"ok":true,"users":["U0CAROL"]}`)
		},
	})
	d := NewDirectory(slack.New("xoxb-t", slack.OptionAPIURL(api.srv.GetAPIURL())), time.Minute)
	clock := time.Now()
	d.now = func() time.Time { return clock }
	ctx := context.Background()

	for _, user := range []string{"U0CAROL", "U0MALLORY", "U0CAROL"} {
		in, err := d.InGroup(ctx, "S0PLATFORM", user)
		if err != nil || in != (user == "U0CAROL") {
			t.Fatalf("InGroup(%s) = %v, %v", user, in, err)
		}
	}
	if n := api.count("/usergroups.users.list"); n != 1 {
		t.Fatalf("%d lookups within the TTL, want 1", n)
	}
	clock = clock.Add(2 * time.Minute)
	fail = true
	if _, err := d.InGroup(ctx, "S0PLATFORM", "U0CAROL"); err == nil || !strings.Contains(err.Error(), "missing_scope") {
		t.Fatalf("after the TTL a failing lookup answered %v, want Slack's error", err)
	}
	fail = false
	if in, err := d.InGroup(ctx, "S0PLATFORM", "U0CAROL"); err != nil || !in {
		t.Fatalf("errors must not be cached: %v, %v", in, err)
	}
	if n := api.count("/usergroups.users.list"); n != 3 {
		t.Fatalf("%d lookups, want 3", n)
	}
}

func TestCheckTellsABadTokenFromAnOutage(t *testing.T) {
	api := newSlackAPI(t, map[string]func(http.ResponseWriter, *http.Request){
		"/auth.test": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
		},
	})
	if _, err := NewNotifier("xoxb-revoked", "C1", api.srv.GetAPIURL()).Check(context.Background()); !errors.Is(err, ErrBadToken) {
		t.Fatalf("invalid_auth: err = %v, want ErrBadToken", err)
	}
	down := slacktest.NewTestServer()
	down.Start()
	url := down.GetAPIURL()
	down.Stop()
	_, err := NewNotifier("xoxb-fine", "C1", url).Check(context.Background())
	if err == nil || errors.Is(err, ErrBadToken) {
		t.Fatalf("Slack unreachable: err = %v, want an error that is not ErrBadToken", err)
	}
}

// A delivery whose step message is rate limited after its parent went out
// resumes from the checkpoint: the retry posts the step, never a second
// parent.
func TestRetryResumesFromCheckpoint(t *testing.T) {
	var mu sync.Mutex
	var posts []string // thread_ts of each accepted post
	limited := 1
	api := newSlackAPI(t, map[string]func(http.ResponseWriter, *http.Request){
		"/chat.postMessage": func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.PostForm.Get("thread_ts") != "" && limited > 0 {
				limited--
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
				fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
				return
			}
			posts = append(posts, r.PostForm.Get("thread_ts"))
			fmt.Fprintf(w, `{"ok":true,"channel":"C1","ts":"1.%d"}`, len(posts))
		},
	})
	n := NewNotifier("xoxb-t", "C1", api.srv.GetAPIURL())
	e := notify.Event{RunID: "change/main/abc", Commit: "abc1234", Stacks: []string{"web"}, State: "planning", Kind: notify.KindReceived, Step: "received"}

	var saved notify.Thread
	d := &notify.Delivery{Event: e, Attempt: 1, Checkpoint: func(th notify.Thread) { saved = th }}
	err := n.Notify(context.Background(), d)
	var limit *slack.RateLimitedError
	if !errors.As(err, &limit) || limit.RetryAfter != 7*time.Second {
		t.Fatalf("first attempt: err = %v, want a rate limit of 7s", err)
	}
	if saved.ParentTS != "1.1" {
		t.Fatalf("checkpoint = %+v, want the parent 1.1", saved)
	}

	retry := &notify.Delivery{Event: e, Thread: saved, Attempt: 2}
	if err := n.Notify(context.Background(), retry); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 2 || posts[0] != "" || posts[1] != "1.1" {
		t.Fatalf("posts (thread of each) = %q, want the parent once, then the step in its thread", posts)
	}
	if retry.Thread.ParentTS != "1.1" || retry.Thread.State != "planning" {
		t.Fatalf("thread after the retry = %+v", retry.Thread)
	}
}

// Events of no run (the watcher, a queue) go to the channel on their own;
// a commit touching no stack is not announced in the channel at all.
func TestEventsOutsideRuns(t *testing.T) {
	var threads []string
	api := newSlackAPI(t, map[string]func(http.ResponseWriter, *http.Request){
		"/chat.postMessage": func(w http.ResponseWriter, r *http.Request) {
			threads = append(threads, r.PostForm.Get("thread_ts"))
			fmt.Fprint(w, `{"ok":true,"channel":"C1","ts":"1.1"}`)
		},
	})
	n := NewNotifier("xoxb-t", "C1", api.srv.GetAPIURL())
	ctx := context.Background()
	if err := n.Notify(ctx, &notify.Delivery{Event: notify.Event{Kind: notify.KindBranch, Branch: "main", Step: "history rewritten"}}); err != nil {
		t.Fatal(err)
	}
	d := &notify.Delivery{Event: notify.Event{Kind: notify.KindReceived, RunID: "change/main/abc", State: "planning", Step: "received"}}
	if err := n.Notify(ctx, d); err != nil {
		t.Fatal(err)
	}
	if len(threads) != 1 || threads[0] != "" || d.Thread.ParentTS != "" {
		t.Fatalf("posts = %q, thread = %+v; want one top-level message (the watcher's)", threads, d.Thread)
	}
}
