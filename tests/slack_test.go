package tests

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/slackui"
)

const (
	slackToken   = "xoxb-e2e"
	slackSecret  = "e2e-signing-secret"
	slackChannel = "C0CHANGES"
	// slackAppToken is the app-level token of Socket Mode.
	slackAppToken = "xapp-e2e"
)

// workspace is a Slack workspace as changeops sees it through the Web API:
// slack-go's slacktest server with our own handlers for the methods the
// app calls (chat.postMessage and chat.update keep messages and threads,
// usergroups.users.list and users.info answer from the test's directory),
// plus the response URLs Slack hands to interactions.
type workspace struct {
	srv *slacktest.Server

	mu       sync.Mutex
	messages []*message
	calls    []string // API methods in the order they were called
	replies  []reply  // what was posted to response URLs
	views    []string // the views opened (views.open), as JSON
	// ephemerals are the messages only one user sees (chat.postEphemeral),
	// as "USER: text".
	ephemerals []string
	groups     map[string][]string
	emails     map[string]string
	// limited answers this many chat.postMessage calls with 429 first.
	limited int
	// sockets receives each Socket Mode connection changeops opens.
	sockets chan *websocket.Conn
}

// message is one message in the channel, as it stands now.
type message struct {
	TS, Thread, Text, Blocks string
	Updates                  int
}

// reply is what changeops posted to an interaction's response URL.
type reply struct {
	Path string
	Msg  slack.WebhookMessage
}

// slackWorkspace points cfg's Slack app at a new workspace.
func slackWorkspace(t *testing.T, cfg *config.Config) *workspace {
	t.Helper()
	ws := &workspace{groups: map[string][]string{}, emails: map[string]string{}, sockets: make(chan *websocket.Conn, 4)}
	ws.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", ws.api("chat.postMessage", ws.post))
		c.Handle("/chat.update", ws.api("chat.update", ws.update))
		// views.open takes JSON, not a form.
		c.Handle("/views.open", func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				TriggerID string          `json:"trigger_id"`
				View      json.RawMessage `json:"view"`
			}
			w.Header().Set("Content-Type", "application/json")
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("Authorization") != "Bearer "+slackToken || req.TriggerID == "" {
				fmt.Fprint(w, `{"ok":false,"error":"invalid_arguments"}`)
				return
			}
			ws.mu.Lock()
			ws.calls = append(ws.calls, "views.open")
			ws.views = append(ws.views, string(req.View))
			ws.mu.Unlock()
			fmt.Fprint(w, `{"ok":true,"view":{"id":"V1"}}`)
		})
		c.Handle("/chat.postEphemeral", ws.api("chat.postEphemeral", func(f url.Values) (any, error) {
			ws.ephemerals = append(ws.ephemerals, f.Get("user")+": "+f.Get("text"))
			return map[string]any{"message_ts": "1700000000.999999"}, nil
		}))
		c.Handle("/usergroups.users.list", ws.api("usergroups.users.list", func(f url.Values) (any, error) {
			return map[string]any{"users": ws.groups[f.Get("usergroup")]}, nil
		}))
		c.Handle("/users.info", ws.api("users.info", func(f url.Values) (any, error) {
			u := f.Get("user")
			return map[string]any{"user": map[string]any{"id": u, "profile": map[string]any{"email": ws.emails[u]}}}, nil
		}))
		// Socket Mode: the app-level token opens a websocket, on which
		// the test plays Slack.
		c.Handle("/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.Header.Get("Authorization") != "Bearer "+slackAppToken {
				fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
				return
			}
			fmt.Fprintf(w, `{"ok":true,"url":%q}`, "ws://"+r.Host+"/socket")
		})
		c.Handle("/socket", func(w http.ResponseWriter, r *http.Request) {
			// Slack's own endpoint takes connections from anywhere.
			up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
			conn, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			ws.sockets <- conn
		})
		c.Handle("/response/", func(w http.ResponseWriter, r *http.Request) {
			var m slack.WebhookMessage
			if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			ws.mu.Lock()
			ws.replies = append(ws.replies, reply{Path: r.URL.Path, Msg: m})
			ws.mu.Unlock()
		})
	})
	ws.srv.Start()
	t.Cleanup(ws.srv.Stop)
	cfg.Slack = config.Slack{Channel: slackChannel, APIURL: ws.srv.GetAPIURL(), BotTokenEnv: "SLACK_BOT_TOKEN",
		SigningSecretEnv: "SLACK_SIGNING_SECRET", GroupCacheTTL: config.Duration(time.Minute)}
	cfg.Secrets.SlackBotToken, cfg.Secrets.SlackSigningSecret = slackToken, slackSecret
	return ws
}

// api wraps a Web API method: it checks the bot token, records the call
// and answers like Slack ({"ok":true,...} or {"ok":false,"error":...}).
func (ws *workspace) api(method string, h func(url.Values) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+slackToken && r.PostForm.Get("token") != slackToken {
			fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
			return
		}
		ws.mu.Lock()
		ws.calls = append(ws.calls, method)
		if method == "chat.postMessage" && ws.limited > 0 {
			ws.limited--
			ws.mu.Unlock()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
			return
		}
		res, err := h(r.PostForm)
		ws.mu.Unlock()
		if err != nil {
			fmt.Fprintf(w, `{"ok":false,"error":%q}`, err.Error())
			return
		}
		body := map[string]any{"ok": true}
		b, _ := json.Marshal(res)
		_ = json.Unmarshal(b, &body)
		_ = json.NewEncoder(w).Encode(body)
	}
}

// post and update run under ws.mu.
func (ws *workspace) post(f url.Values) (any, error) {
	if f.Get("channel") != slackChannel {
		return nil, fmt.Errorf("channel_not_found")
	}
	m := &message{TS: fmt.Sprintf("1700000000.%06d", len(ws.messages)+1), Thread: f.Get("thread_ts"), Text: f.Get("text"), Blocks: asSlackReads(f.Get("blocks"))}
	ws.messages = append(ws.messages, m)
	return map[string]any{"channel": slackChannel, "ts": m.TS}, nil
}

func (ws *workspace) update(f url.Values) (any, error) {
	for _, m := range ws.messages {
		if m.TS == f.Get("ts") {
			m.Text, m.Blocks = f.Get("text"), asSlackReads(f.Get("blocks"))
			m.Updates++
			return map[string]any{"channel": slackChannel, "ts": m.TS, "text": m.Text}, nil
		}
	}
	return nil, fmt.Errorf("message_not_found")
}

// asSlackReads re-encodes blocks JSON without Go's \u003c escapes, as
// Slack reads it, so tests can look for <@U…> mentions.
func asSlackReads(blocks string) string {
	if blocks == "" {
		return ""
	}
	var v any
	if err := json.Unmarshal([]byte(blocks), &v); err != nil {
		return blocks
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// parents are the channel's top-level messages.
func (ws *workspace) parents() []message {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var out []message
	for _, m := range ws.messages {
		if m.Thread == "" {
			out = append(out, *m)
		}
	}
	return out
}

// thread is the messages in the thread under parent, in order.
func (ws *workspace) thread(parent string) []message {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var out []message
	for _, m := range ws.messages {
		if m.Thread == parent {
			out = append(out, *m)
		}
	}
	return out
}

// parentOf is the parent message of the run whose commit starts with
// short, if it was posted.
func (ws *workspace) parentOf(short string) (message, bool) {
	for _, m := range ws.parents() {
		if strings.Contains(m.Text, " "+short+" ") {
			return m, true
		}
	}
	return message{}, false
}

// waitThread waits until the run's thread holds messages whose fallback
// texts contain each of steps, in this order and nothing else, and its
// parent shows state; it returns the thread. A message replaced in place
// (the approval buttons) is matched by what it says now.
func (ws *workspace) waitThread(t *testing.T, short, state string, steps ...string) []message {
	t.Helper()
	var msgs []message
	waitFor(t, 30*time.Second, fmt.Sprintf("thread of %s: %v, parent %s", short, steps, state), func() (bool, string) {
		parent, ok := ws.parentOf(short)
		if !ok {
			return false, fmt.Sprintf("no parent message; channel: %v", ws.parents())
		}
		msgs = ws.thread(parent.TS)
		var got []string
		for _, m := range msgs {
			got = append(got, m.Text)
		}
		if len(msgs) != len(steps) || !strings.HasPrefix(parent.Text, state+": ") {
			return false, fmt.Sprintf("parent %q, thread %q", parent.Text, got)
		}
		for i, s := range steps {
			if !strings.Contains(msgs[i].Text, s) {
				return false, fmt.Sprintf("message %d is %q, want one saying %q; thread %q", i, msgs[i].Text, s, got)
			}
		}
		return true, ""
	})
	return msgs
}

// replyTo waits for the answer posted to the response URL path.
func (ws *workspace) replyTo(t *testing.T, path string) slack.WebhookMessage {
	t.Helper()
	var got slack.WebhookMessage
	waitFor(t, 30*time.Second, "a reply to "+path, func() (bool, string) {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		for _, r := range ws.replies {
			if r.Path == path {
				got = r.Msg
				return true, ""
			}
		}
		return false, fmt.Sprint(ws.replies)
	})
	return got
}

// click is what Slack sends when user clicks a run's button: the block
// actions payload, form-encoded, signed with secret at the given time.
type click struct {
	user, action, run, responsePath string
	secret                          string
	at                              time.Time
}

// payload is the block actions payload of the click, as Slack sends it.
func (ws *workspace) payload(c click) []byte {
	cb := map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": c.user, "username": strings.ToLower(c.user)},
		"channel":      map[string]any{"id": slackChannel},
		"response_url": ws.srv.GetAPIURL() + strings.TrimPrefix(c.responsePath, "/"),
		"actions": []map[string]any{{
			"type": "button", "block_id": "changeops_decision", "action_id": c.action, "value": c.run,
		}},
	}
	b, _ := json.Marshal(cb)
	return b
}

// send posts the click to changeops' interactivity endpoint, form-encoded
// and signed as Slack does, and returns the HTTP status.
func (ws *workspace) send(t *testing.T, endpoint string, c click) int {
	t.Helper()
	return signedPost(t, endpoint, url.Values{"payload": {string(ws.payload(c))}}.Encode(), c.secret, c.at)
}

// command is what Slack sends when user types `/changeops text`: the
// slash command's form, signed with secret now; it returns the HTTP
// status. The outcome goes to responsePath (replyTo).
func (ws *workspace) command(t *testing.T, endpoint, secret, user, text, responsePath string) int {
	t.Helper()
	body := url.Values{
		"command": {"/changeops"}, "text": {text}, "user_id": {user}, "user_name": {strings.ToLower(user)},
		"channel_id": {slackChannel}, "team_id": {"T0E2E"},
		"response_url": {ws.srv.GetAPIURL() + strings.TrimPrefix(responsePath, "/")},
	}.Encode()
	return signedPost(t, endpoint, body, secret, time.Now())
}

// interact sends an interaction payload (a click, a modal's submission)
// to changeops' interactivity endpoint, signed with the right secret now.
func (ws *workspace) interact(t *testing.T, endpoint string, payload map[string]any) int {
	t.Helper()
	b, _ := json.Marshal(payload)
	return signedPost(t, endpoint, url.Values{"payload": {string(b)}}.Encode(), slackSecret, time.Now())
}

// waitView waits for the nth view changeops opened (from 1) and returns it.
func (ws *workspace) waitView(t *testing.T, n int) string {
	t.Helper()
	var v string
	waitFor(t, 30*time.Second, fmt.Sprintf("view %d opened", n), func() (bool, string) {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		if len(ws.views) < n {
			return false, fmt.Sprint(ws.views)
		}
		v = ws.views[n-1]
		return true, ""
	})
	return v
}

// waitEphemeral waits for a message only user sees, saying want.
func (ws *workspace) waitEphemeral(t *testing.T, user, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("an ephemeral message to %s saying %q", user, want), func() (bool, string) {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		for _, e := range ws.ephemerals {
			if strings.HasPrefix(e, user+": ") && strings.Contains(e, want) {
				return true, ""
			}
		}
		return false, strings.Join(ws.ephemerals, " | ")
	})
}

// signedPost posts a form to changeops signed as Slack signs requests.
func signedPost(t *testing.T, endpoint, body, secret string, at time.Time) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// buttonValue reads the value of the Approve button in a message's blocks.
func buttonValue(t *testing.T, blocks string) slackui.Button {
	t.Helper()
	v, err := slackui.ParseButton(actionValue(t, blocks, slackui.ActionApprove))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// approveClick is a valid click on Approve by user, now.
func approveClick(user, run, responsePath string) click {
	return click{user: user, action: slackui.ActionApprove, run: run, responsePath: responsePath, secret: slackSecret, at: time.Now()}
}
