// Package worker is changeops' long-running process: it connects to
// Temporal, registers the workflows and activities, keeps the branch watcher
// running and serves the HTTP endpoints.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/metrics"
	"github.com/changeops/changeops/internal/notify"
	"github.com/changeops/changeops/slackapp"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/workflows"
)

// Worker is a running changeops worker.
type Worker struct {
	cfg    *config.Config
	logger *slog.Logger
	client client.Client
	worker sdkworker.Worker
	http   *http.Server
	ln     net.Listener
	// metricsHTTP serves /metrics on http.metrics_listen, when set.
	metricsHTTP *http.Server
	metricsLn   net.Listener
	// bodies caps the requests read before they are authenticated.
	bodies *bodyGate
	// approvals takes Slack button clicks; nil without Slack.
	approvals *slackapp.Approvals
	// stopSocket ends Socket Mode, when it runs.
	stopSocket context.CancelFunc
	metrics    *metrics.Metrics
	// polling is set once the worker polls its task queue, cleared on Stop.
	polling atomic.Bool
	// pulumi is the Pulumi CLI it runs.
	pulumi pulumiCLI
	// deployment is the Worker Deployment version it polls as.
	deployment Deployment
}

// Option changes how Start runs the worker.
type Option func(*options)

type options struct {
	pauseAt    []string
	pauseMarks string
}

// WithPause makes the activities stop at the named points (see
// activities.PauseAfterRevertPush) until they are cancelled, after appending the
// point's name to the file marks: fault-injection tests kill the worker
// there. Never for production use.
func WithPause(points []string, marks string) Option {
	return func(o *options) { o.pauseAt, o.pauseMarks = points, marks }
}

// Start connects, registers and starts everything, and returns once the
// worker polls and the HTTP endpoints listen. Stop it with Stop.
func Start(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts ...Option) (*Worker, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := hideFromChildren(); err != nil {
		logger.Warn("could not mark the worker non-dumpable: processes of its user may read its environment through /proc", "error", err)
	}
	env, cli, err := startPulumi(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}

	repos := activities.OpenRepos(cfg)
	if err := CheckStacks(ctx, cfg, repos, logger); err != nil {
		return nil, err
	}
	// The organisation's policies judge every plan: a broken one would
	// fail every run, so it stops the worker at start-up instead. The
	// repository's are checked by each run, at its own commit.
	if _, err := activities.LoadPolicies(ctx, config.Policy{Path: config.PolicyNone, Org: cfg.Policy.Org, Timeout: cfg.Policy.Timeout}, ""); err != nil {
		return nil, fmt.Errorf("policy.org: %w", err)
	}

	m := metrics.New()
	c, err := Dial(ctx, cfg.Temporal, cfg.Secrets.TemporalAPIKey, logger, m.Handler)
	if err != nil {
		return nil, err
	}
	if err := RegisterSearchAttributes(ctx, c, cfg.Temporal.Namespace); err != nil {
		c.Close()
		return nil, err
	}
	notifier := notify.Multi{notify.Console{Logger: logger}}
	// The gate reads people and the Slack app's secret as this worker's
	// config has them: every worker of a deployment must share both.
	slackSecret := cfg.Secrets.SlackSigningSecret
	if slackSecret == "" {
		slackSecret = cfg.Secrets.SlackAppToken
	}
	g := gate.New(cfg.People, slackSecret)
	var approvals *slackapp.Approvals
	if cfg.Slack.BotTokenEnv != "" && cfg.Secrets.SlackBotToken == "" {
		logger.Warn("slack is off: slack.bot_token_env names " + cfg.Slack.BotTokenEnv + ", which is not set; export the bot token (xoxb-...) to post to Slack")
	}
	if cfg.Secrets.SlackBotToken != "" {
		n := slackapp.NewNotifier(cfg.Secrets.SlackBotToken, cfg.Slack.Channel, cfg.Slack.APIURL)
		if checkSlack(ctx, n, logger) {
			notifier = append(notifier, n)
		}
		approvals = &slackapp.Approvals{
			Temporal: c, Slack: n.Client, Logger: logger, HTTP: &http.Client{Timeout: 10 * time.Second},
			SigningSecret: cfg.Secrets.SlackSigningSecret,
			DecisionKey:   gate.SlackKey(slackSecret),
			People:        g,
			Directory:     slackapp.NewDirectory(n.Client, cfg.Slack.GroupCacheTTL.D()),
			TaskQueue:     cfg.Temporal.TaskQueue,
			Stacks:        cfg.Stacks,
		}
	}

	dep := deploymentOf(cfg.Temporal)
	w := sdkworker.New(c, cfg.Temporal.TaskQueue, sdkworker.Options{
		DeploymentOptions: dep.options(),
		WorkerStopTimeout: cfg.Temporal.WorkerStopTimeout.D(),
		// The SDK would hold heartbeats back for up to 80% of the
		// heartbeat timeout (48 s of a minute), so a stall of a few
		// seconds on a busy machine could time an attempt out while it
		// is alive; sending at most every 10 s leaves 50 s of slack.
		MaxHeartbeatThrottleInterval: 10 * time.Second,
	})
	workflows.Workflows{Gate: g}.Register(w)
	acts := activities.New(cfg, repos, env, notifier)
	acts.Temporal = c
	if acts.Forges, err = activities.OpenForges(cfg, acts.HTTP); err != nil {
		c.Close()
		return nil, err
	}
	if len(o.pauseAt) > 0 {
		acts.PauseAt = pauser(o.pauseAt, o.pauseMarks, logger)
	}
	w.RegisterActivity(acts)

	wk := &Worker{cfg: cfg, logger: logger, client: c, worker: w, approvals: approvals, metrics: m, deployment: dep}
	wk.pulumi = cli
	if err := wk.serveHTTP(defaultHTTPTimeouts); err != nil {
		c.Close()
		return nil, err
	}

	if err := w.Start(); err != nil {
		wk.Stop()
		return nil, fmt.Errorf("start worker on task queue %s: %w", cfg.Temporal.TaskQueue, err)
	}
	current := ""
	if dep.Versioned {
		if current, err = joinDeployment(ctx, c, dep, cfg.Temporal.TaskQueue, logger); err != nil {
			wk.Stop()
			return nil, err
		}
		if current != dep.BuildID {
			logger.Warn("this build is not the deployment's current build: it runs only the runs pinned to it (and a ramp's share); new runs go to the current build. Once it should take them: changeops deployment set-current "+dep.BuildID,
				"deployment", dep.Name, "build", dep.BuildID, "current", current)
		}
	}
	wk.polling.Store(true)
	if err := wk.startWatchers(ctx); err != nil {
		wk.Stop()
		return nil, err
	}
	if err := starter.EnsureFreezes(ctx, c, cfg.Temporal.TaskQueue); err != nil {
		wk.Stop()
		return nil, err
	}
	if err := ReconcileDriftSchedules(ctx, c, cfg, logger); err != nil {
		wk.Stop()
		return nil, err
	}
	if approvals != nil && cfg.Slack.SocketMode {
		wk.runSocketMode()
	}
	logger.Info("worker started", "task_queue", cfg.Temporal.TaskQueue, "repo", cfg.Repo.URL,
		"deployment", dep.Name, "build", dep.BuildID, "versioned", dep.Versioned, "current_build", current,
		"watches", len(cfg.Watches()), "http", wk.Addr(), "metrics", wk.MetricsAddr())
	return wk, nil
}

// Run starts the worker and blocks until ctx is done.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts ...Option) error {
	w, err := Start(ctx, cfg, logger, opts...)
	if err != nil {
		return err
	}
	<-ctx.Done()
	w.Stop()
	return nil
}

// pauser blocks the activities at the given points: it records the point
// in marks, then waits until the activity is cancelled (or the process is
// killed, which is what the test does).
func pauser(points []string, marks string, logger *slog.Logger) func(context.Context, string) {
	return func(ctx context.Context, point string) {
		if !slices.Contains(points, point) {
			return
		}
		logger.Warn("paused for fault injection", "point", point)
		if f, err := os.OpenFile(marks, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(f, point)
			f.Close()
		}
		<-ctx.Done()
	}
}

// Client is the worker's Temporal client.
func (w *Worker) Client() client.Client { return w.client }

// Addr is where the HTTP endpoints listen.
func (w *Worker) Addr() string { return w.ln.Addr().String() }

// Stop stops polling, lets running activities finish within
// temporal.worker_stop_timeout (then cancels them: a retry elsewhere takes
// over), closes the HTTP server and the client.
func (w *Worker) Stop() {
	if w.stopSocket != nil {
		w.stopSocket()
	}
	w.polling.Store(false)
	w.worker.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.stopHTTP(ctx)
	if w.approvals != nil {
		w.approvals.Wait() // a click already acknowledged still gets its decision
	}
	w.client.Close()
	_ = w.metrics.Close()
}

// checkSlack asks Slack about the bot token once, at start-up, and says
// clearly what is wrong. A token Slack refuses turns Slack notifications
// off for this process (every one would fail); Slack being unreachable
// does not, since it may come back.
func checkSlack(ctx context.Context, n *slackapp.Notifier, logger *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	who, err := n.Check(ctx)
	switch {
	case errors.Is(err, slackapp.ErrBadToken):
		logger.Error("slack notifications are off: check slack.bot_token_env (a bot token, xoxb-...) and reinstall the app if it was revoked; notifications go to the log only, approvals through changeops approve", "error", err)
		return false
	case err != nil:
		logger.Warn("slack is not reachable now; notifications will be retried as they go out", "error", err)
		return true
	}
	logger.Info("slack connected", "team", who.Team, "bot", who.User, "channel", n.Channel)
	return true
}

// runSocketMode receives Slack interactions over Socket Mode until Stop.
func (w *Worker) runSocketMode() {
	ctx, cancel := context.WithCancel(context.Background())
	w.stopSocket = cancel
	var opts []slack.Option
	if w.cfg.Slack.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(w.cfg.Slack.APIURL))
	}
	api := slack.New(w.cfg.Secrets.SlackBotToken, append(opts, slack.OptionAppLevelToken(w.cfg.Secrets.SlackAppToken))...)
	go func() {
		if err := w.approvals.RunSocketMode(ctx, api); err != nil {
			w.logger.Error("slack socket mode stopped: buttons do not work until the worker restarts; approve with changeops approve", "error", err)
		}
	}()
}

// startWatchers makes sure each (repository, branch) the stacks deploy
// from has its watcher; an existing one is kept.
func (w *Worker) startWatchers(ctx context.Context) error {
	for _, watch := range w.cfg.Watches() {
		repo, _ := w.cfg.RepoByName(watch.Repo)
		id := contract.WatcherID(watch.Repo, watch.Branch)
		_, err := w.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:                       id,
			TaskQueue:                w.cfg.Temporal.TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			StaticSummary:            "Watch " + watch.Branch + " of " + repo.URL,
		}, contract.WatcherWorkflowName, workflows.WatcherInput{Repo: watch.Repo, Branch: watch.Branch, UIURL: w.cfg.Temporal.UIURL})
		if err != nil {
			return fmt.Errorf("start watcher %s: %w", id, err)
		}
		// An existing watcher kept by USE_EXISTING may serve another task
		// queue (another configuration): no worker here would run it.
		d, err := w.client.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return fmt.Errorf("describe watcher %s: %w", id, err)
		}
		if q := d.GetExecutionConfig().GetTaskQueue().GetName(); q != w.cfg.Temporal.TaskQueue {
			return fmt.Errorf("watcher %s already runs on task queue %q, but temporal.task_queue is %q: use the same task queue, or end the old watcher (temporal workflow terminate --workflow-id %s) to move it",
				id, q, w.cfg.Temporal.TaskQueue, id)
		}
	}
	return nil
}

func (w *Worker) routes() http.Handler {
	mux := http.NewServeMux()
	// The webhooks and Slack's interactions read a body before they can
	// check its signature: w.bodies caps how many do at once.
	hooks := &webhooks{cfg: w.cfg, logger: w.logger, poke: w.poke, preview: w.preview, bodies: w.bodies}
	hooks.register(mux)
	if w.approvals != nil && !w.cfg.Slack.SocketMode {
		mux.Handle("POST /slack/interactions", w.bodies.limit(w.approvals))
		mux.Handle("POST /slack/commands", w.bodies.limit(w.approvals.Commands()))
	}
	// healthz: the process is up and serving. readyz: it can do work
	// (Temporal answers and the worker polls its task queue).
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		if !w.polling.Load() {
			http.Error(rw, "not ready: the worker is not polling task queue "+w.cfg.Temporal.TaskQueue, http.StatusServiceUnavailable)
			return
		}
		if _, err := w.client.CheckHealth(r.Context(), &client.CheckHealthRequest{}); err != nil {
			http.Error(rw, "not ready: temporal at "+w.cfg.Temporal.Address+" does not answer", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ready")
		w.writeReady(rw)
		fmt.Fprintf(rw, "pulumi: %s (%s)\n", w.pulumi.Version, w.pulumi.Path)
	})
	if w.cfg.HTTP.MetricsListen == "" { // else on its own listener only
		mux.Handle("GET /metrics", w.metrics.HTTP)
	}
	return mux
}
