package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/metrics"
	"github.com/changeops/changeops/slackapp"
)

// startHTTP serves a worker's HTTP endpoints as Start does, without
// Temporal: the tests below stay off /readyz and never reach a poke (a
// signed ping is authorised and ignored).
func startHTTP(t *testing.T, cfg *config.Config, timeouts httpTimeouts, approvals *slackapp.Approvals) *Worker {
	t.Helper()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Secrets.GitHubSecret = "gh-secret"
	if cfg.Webhooks.MaxBody == 0 {
		cfg.Webhooks.MaxBody = config.DefaultMaxBody
	}
	if cfg.HTTP.MaxConcurrent == 0 {
		cfg.HTTP.MaxConcurrent = config.DefaultMaxConcurrent
	}
	m := metrics.New()
	w := &Worker{cfg: cfg, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: m, approvals: approvals}
	if err := w.serveHTTP(timeouts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.stopHTTP(ctx)
		m.Close()
	})
	return w
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that sends its headers, then trickles its body, is cut off at
// the read timeout, and its slot is given back.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	timeouts := defaultHTTPTimeouts
	timeouts.read = 300 * time.Millisecond
	w := startHTTP(t, &config.Config{}, timeouts, nil)

	conn, err := net.Dial("tcp", w.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 1000
	fmt.Fprintf(conn, "POST /webhooks/github HTTP/1.1\r\nHost: changeops\r\nX-GitHub-Event: push\r\nContent-Length: %d\r\n\r\n", size)
	start := time.Now()
	var sent atomic.Int64
	go func() { // one byte every 20ms: 20s for the whole body
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if _, err := conn.Write([]byte("x")); err != nil || sent.Add(1) == size {
				return
			}
		}
	}()
	waitUntil(t, 5*time.Second, "the trickling request holds no slot", func() bool { return w.bodies.inFlight() == 1 })

	// The server answers (the handler's read failed) and closes, or just
	// closes; either way long before the body could have arrived.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still open after %s with %d of %d bytes sent: the body read has no timeout", time.Since(start), sent.Load(), size)
	}
	if n := sent.Load(); n >= size {
		t.Fatalf("the whole body was sent (%d bytes) before the connection ended", n)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400") {
		t.Errorf("answer %q, want a 400 or none", strings.SplitN(string(got), "\r\n", 2)[0])
	}
	t.Logf("cut off after %s with %d of %d bytes sent", time.Since(start).Round(time.Millisecond), sent.Load(), size)
	waitUntil(t, 5*time.Second, "the slot is given back", func() bool { return w.bodies.inFlight() == 0 })
}

// A delivery declaring a body over webhooks.max_body is refused before a
// byte of it is read.
func TestDeclaredOversizeIsRefusedUpFront(t *testing.T) {
	t.Parallel()
	w := startHTTP(t, &config.Config{}, defaultHTTPTimeouts, nil)
	conn, err := net.Dial("tcp", w.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /webhooks/github HTTP/1.1\r\nHost: changeops\r\nX-GitHub-Event: push\r\nContent-Length: %d\r\n\r\n", 100<<20)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to headers declaring 100 MiB: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
}

// floodBody is a body of size bytes, made as it is read, whose last byte
// waits for release: the server has then read all but one byte and holds
// them, as a client stalling at the end would make it.
type floodBody struct {
	left    int
	release <-chan struct{}
	atGate  *atomic.Bool
}

func (b *floodBody) Read(p []byte) (int, error) {
	switch {
	case b.left == 0:
		return 0, io.EOF
	case b.left == 1:
		b.atGate.Store(true)
		<-b.release
		p[0], b.left = '}', 0
		return 1, nil
	}
	n := min(len(p), b.left-1)
	clear(p[:n])
	b.left -= n
	return n, nil
}

// 100 unauthenticated clients each sending a 5 MiB body at once make the
// worker read at most http.max_concurrent of them: the others get 503 with
// Retry-After at once, the heap grows by at most max_concurrent bodies,
// and the endpoints that read no body still answer. An authorised
// delivery arriving while every slot is held gets the same quick 503 (a
// forge's lost delivery is caught by the next poll; nothing can tell it
// from the flood before its body is read) and is served on retry.
//
// Not parallel: it measures the process's heap.
func TestFloodOfUnauthenticatedBodies(t *testing.T) {
	const clients = 100
	cfg := &config.Config{}
	w := startHTTP(t, cfg, defaultHTTPTimeouts, &slackapp.Approvals{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SigningSecret: "slack-secret",
	})
	limit, maxBody := cfg.HTTP.MaxConcurrent, int(cfg.Webhooks.MaxBody)
	base := "http://" + w.Addr()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	type result struct {
		status     int
		retryAfter string
		err        error
	}
	results := make([]result, clients)
	atGate := make([]atomic.Bool, clients)
	answered := make([]atomic.Bool, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/github", &floodBody{left: maxBody, release: release, atGate: &atGate[i]})
			req.ContentLength = int64(maxBody)
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-Hub-Signature-256", "sha256="+sign("not-the-secret", "{}"))
			resp, err := hc.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				results[i] = result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
			} else {
				results[i].err = err
			}
			answered[i].Store(true)
		})
	}
	settled := func() (n int) {
		for i := range clients {
			if atGate[i].Load() || answered[i].Load() {
				n++
			}
		}
		return n
	}
	waitUntil(t, time.Minute, "every flood request was answered or sent all but its last byte", func() bool { return settled() == clients })
	if n := w.bodies.inFlight(); n != min(limit, clients) {
		t.Errorf("%d requests are being read, want http.max_concurrent = %d", n, limit)
	}

	// What the admitted requests hold is live heap once they have read
	// their bodies; wait for that, then bound it.
	admitted := w.bodies.inFlight()
	var grown int64
	waitUntil(t, time.Minute, "the admitted requests read their bodies", func() bool {
		runtime.GC()
		var now runtime.MemStats
		runtime.ReadMemStats(&now)
		grown = int64(now.HeapAlloc) - int64(before.HeapAlloc)
		return grown >= int64(admitted)*int64(maxBody)*9/10
	})
	// io.ReadAll's buffer ends at most 1.25 times the body, plus room for
	// the connections' own buffers.
	bound := int64(limit)*int64(maxBody)*5/4 + 16<<20
	t.Logf("%d clients × %d MiB: %d read at once, heap grew by %d MiB (bound %d MiB)", clients, maxBody>>20, admitted, grown>>20, bound>>20)
	if grown > bound {
		t.Errorf("heap grew by %d MiB with %d bodies being read, over %d MiB: the reads are not capped", grown>>20, admitted, bound>>20)
	}

	// Meanwhile: an authorised delivery and a Slack click are refused at
	// once, telling when to retry; the endpoints without a body answer.
	ping := `{"zen":"hi"}`
	deliver := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/github", strings.NewReader(ping))
		req.Header.Set("X-GitHub-Event", "ping")
		req.Header.Set("X-Hub-Signature-256", "sha256="+sign("gh-secret", ping))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := deliver(); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("authorised delivery while saturated: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, err := hc.Post(base+"/slack/interactions", "application/x-www-form-urlencoded", strings.NewReader("payload={}")); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("slack interaction while saturated: %d, want 503 (it shares the cap)", resp.StatusCode)
	}
	if resp, err := hc.Get(base + "/healthz"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while saturated: %d, want 200", resp.StatusCode)
	}

	// The flood ends; the retry is served.
	close(release)
	released = true
	wg.Wait()
	// The refused are answered 503 before their bodies are read; a client
	// still sending one may see its connection reset instead.
	count := map[string]int{}
	for _, r := range results {
		switch {
		case r.err != nil && (strings.Contains(r.err.Error(), "connection reset") || strings.Contains(r.err.Error(), "broken pipe")):
			count["refused"]++
		case r.err != nil:
			count["error: "+r.err.Error()]++
		case r.status == http.StatusServiceUnavailable && r.retryAfter != "":
			count["refused"]++
		default:
			count[strconv.Itoa(r.status)]++
		}
	}
	want := map[string]int{"401": min(limit, clients), "refused": clients - min(limit, clients)}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("flood answers %v, want %v", count, want)
	}
	waitUntil(t, 10*time.Second, "the slots are given back", func() bool { return w.bodies.inFlight() == 0 })
	if resp := deliver(); resp.StatusCode != http.StatusAccepted {
		t.Errorf("authorised delivery retried after the flood: %d, want 202", resp.StatusCode)
	}
}

// With http.metrics_listen, /metrics is served there and not on
// http.listen; without it, on http.listen.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	status := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	w := startHTTP(t, &config.Config{HTTP: config.HTTP{MetricsListen: "127.0.0.1:0"}}, defaultHTTPTimeouts, nil)
	if w.MetricsAddr() == w.Addr() {
		t.Fatalf("metrics on %s, the main listener", w.Addr())
	}
	for _, c := range []struct {
		url  string
		want int
	}{
		{"http://" + w.MetricsAddr() + "/metrics", http.StatusOK},
		{"http://" + w.Addr() + "/metrics", http.StatusNotFound},
		{"http://" + w.Addr() + "/healthz", http.StatusOK},
		{"http://" + w.MetricsAddr() + "/healthz", http.StatusNotFound},
	} {
		if got := status(c.url); got != c.want {
			t.Errorf("GET %s: %d, want %d", c.url, got, c.want)
		}
	}

	one := startHTTP(t, &config.Config{}, defaultHTTPTimeouts, nil)
	if one.MetricsAddr() != one.Addr() {
		t.Errorf("without metrics_listen, metrics on %s, want %s", one.MetricsAddr(), one.Addr())
	}
	if got := status("http://" + one.Addr() + "/metrics"); got != http.StatusOK {
		t.Errorf("without metrics_listen, GET /metrics: %d, want 200", got)
	}
}
