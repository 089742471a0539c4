// Package metrics exposes a worker's metrics to Prometheus: the Temporal
// SDK's own (polls, task latencies, activity failures) and changeops' run
// metrics (workflows.Metric*), which workflows record through
// workflow.GetMetricsHandler, so that a history being replayed never counts
// twice.
package metrics

import (
	"io"
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// sanitize makes names and label keys valid Prometheus names (as the SDK's
// PrometheusSanitizeOptions), but keeps '-' and '.' in label values, which
// Prometheus allows: a state reads rolled-back as it does in ChangeState,
// and a stack keeps its configured name.
var sanitize = func() tally.SanitizeOptions {
	o := sdktally.PrometheusSanitizeOptions
	o.ValueCharacters = tally.ValidCharacters{Ranges: tally.AlphanumericRange, Characters: []rune{'_', '-', '.'}}
	return o
}()

// Metrics is a worker's registry: Handler goes into the Temporal client's
// options, HTTP serves /metrics.
type Metrics struct {
	Handler client.MetricsHandler
	HTTP    http.Handler
	closer  io.Closer
}

// New makes a registry of its own (never the process-wide default, so
// several workers in one process, as in tests, do not collide).
func New() *Metrics {
	reg := prom.NewRegistry()
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       reg,
		DefaultTimerType: tallyprom.HistogramTimerType,
		// Seconds, from a quick notification to a day's wait for approval.
		DefaultHistogramBuckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sanitize,
	}, time.Second)
	return &Metrics{
		Handler: sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)),
		HTTP:    reporter.HTTPHandler(),
		closer:  closer,
	}
}

// Close flushes and stops reporting.
func (m *Metrics) Close() error { return m.closer.Close() }
