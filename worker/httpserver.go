package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/changeops/changeops/config"
)

// httpTimeouts bound how long one client can hold a connection of the
// worker's listeners.
type httpTimeouts struct {
	readHeader, read, write, idle time.Duration
}

// defaultHTTPTimeouts are the listeners' timeouts. Everything that talks to
// them (forges, Slack, Prometheus, load balancers' health checks) sends
// small requests from data centres and expects answers in seconds.
var defaultHTTPTimeouts = httpTimeouts{
	// Headers are a few hundred bytes: a client that has not sent them
	// in 10s is stalling.
	readHeader: 10 * time.Second,
	// The whole request, body included: a webhooks.max_body delivery of
	// 5 MiB in 30s needs 175 KB/s, and forges send far faster. A client
	// trickling a body (slow loris) is cut off here, which also frees its
	// slot of http.max_concurrent.
	read: 30 * time.Second,
	// From the end of the headers to the end of the answer: the body's
	// read (up to read) plus the handler, which signals or asks Temporal
	// (a webhook's poke, /readyz) or acknowledges a Slack click at once.
	write: 60 * time.Second,
	// A kept-alive connection waiting for its next request; Prometheus
	// scrapes every 15s to 1m over one connection, so 2m keeps its
	// connection while idle sockets do not pile up.
	idle: 2 * time.Minute,
}

func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
	}
}

// serveHTTP listens on http.listen, and on http.metrics_listen when it is
// set (then /metrics is served there only), and serves until stopHTTP.
func (w *Worker) serveHTTP(t httpTimeouts) error {
	ln, err := net.Listen("tcp", w.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen on http.listen %s: %w", w.cfg.HTTP.Listen, err)
	}
	var metricsLn net.Listener
	if w.cfg.HTTP.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", w.cfg.HTTP.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("listen on http.metrics_listen %s: %w", w.cfg.HTTP.MetricsListen, err)
		}
	}
	w.bodies = newBodyGate(w.cfg.HTTP.MaxConcurrent, w.logger)
	w.ln, w.http = ln, newHTTPServer(w.routes(), t)
	go w.serve(w.http, ln)
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", w.metrics.HTTP)
		w.metricsLn, w.metricsHTTP = metricsLn, newHTTPServer(mux, t)
		go w.serve(w.metricsHTTP, metricsLn)
	}
	return nil
}

func (w *Worker) serve(s *http.Server, ln net.Listener) {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		w.logger.Error("http server stopped", "address", ln.Addr().String(), "error", err)
	}
}

// stopHTTP closes the listeners and waits for the requests in progress
// until ctx is done.
func (w *Worker) stopHTTP(ctx context.Context) {
	_ = w.http.Shutdown(ctx)
	if w.metricsHTTP != nil {
		_ = w.metricsHTTP.Shutdown(ctx)
	}
}

// MetricsAddr is where /metrics is served: http.metrics_listen's
// address when it is set, else Addr.
func (w *Worker) MetricsAddr() string {
	if w.metricsLn != nil {
		return w.metricsLn.Addr().String()
	}
	return w.Addr()
}

// retryAfter is what a refused request is told to wait, in seconds: a
// slot frees as soon as one body has been read (milliseconds for a real
// delivery, http.read at worst for a stalling client).
const retryAfter = 1

// bodyGate caps the requests whose bodies are read before they can be
// authenticated (the webhooks' signatures and Slack's cover the body): at
// most max_concurrent at once, each read up to its endpoint's limit, so
// the memory they take stays below max_concurrent × the limit however
// many clients connect. One more is answered 503 with Retry-After at once,
// without reading its body, rather than queued: a queue would hold its
// connection and, unbounded, its memory. A forge's delivery refused this
// way is caught by the branch's next poll; a Slack click can be clicked
// again.
type bodyGate struct {
	slots  chan struct{}
	logger *slog.Logger
	// refused counts refusals since the last warning; warned is when
	// that was (Unix nanoseconds).
	refused atomic.Int64
	warned  atomic.Int64
}

// newBodyGate admits n at once; 0 (a Config built in Go without
// ApplyDefaults) is the default.
func newBodyGate(n int, logger *slog.Logger) *bodyGate {
	if n <= 0 {
		n = config.DefaultMaxConcurrent
	}
	return &bodyGate{slots: make(chan struct{}, n), logger: logger}
}

// limit admits h's requests while a slot is free; a nil gate admits all.
func (g *bodyGate) limit(h http.Handler) http.Handler {
	if g == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.slots <- struct{}{}:
			defer func() { <-g.slots }()
			h.ServeHTTP(w, r)
		default:
			g.warn(r)
			// The body is left unread: the server closes the connection
			// rather than read more than 256 KiB of it.
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
			http.Error(w, fmt.Sprintf("busy: %d requests are being read (http.max_concurrent); retry after %ds", cap(g.slots), retryAfter),
				http.StatusServiceUnavailable)
		}
	})
}

// warn logs refusals at most once a minute, with their number, so that a
// flood of requests does not become a flood of log lines.
func (g *bodyGate) warn(r *http.Request) {
	g.refused.Add(1)
	now, last := time.Now().UnixNano(), g.warned.Load()
	if now-last < int64(time.Minute) || !g.warned.CompareAndSwap(last, now) {
		return
	}
	g.logger.Warn("http requests refused with 503: http.max_concurrent bodies are being read already (a burst of deliveries, or clients stalling); raise http.max_concurrent if deliveries are lost this way",
		"refused", g.refused.Swap(0), "max_concurrent", cap(g.slots), "path", r.URL.Path, "remote", r.RemoteAddr)
}

// inFlight is the number of requests admitted and not yet answered.
func (g *bodyGate) inFlight() int { return len(g.slots) }
