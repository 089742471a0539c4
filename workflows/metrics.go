package workflows

// The run metrics workflows record (Prometheus names; timers are
// histograms in seconds, served by the worker's /metrics).
const (
	// MetricRunsFinished counts runs by how they ended (tag state).
	MetricRunsFinished = "changeops_runs_finished"
	// MetricApprovalWait is how long runs waited for a decision (tag outcome).
	MetricApprovalWait = "changeops_approval_wait"
	// MetricApplyDuration and MetricVerifyDuration time each stack's apply and
	// verification (tag stack).
	MetricApplyDuration  = "changeops_apply_duration"
	MetricVerifyDuration = "changeops_verify_duration"
	// MetricRollbacks counts rollbacks by outcome (rolled-back, rollback-failed).
	MetricRollbacks = "changeops_rollbacks"
	// MetricDriftChecks counts drift checks by stack and result (none, found).
	MetricDriftChecks = "changeops_drift_checks"
	// MetricNotificationFailures counts notifications given up on (tag step kind).
	MetricNotificationFailures = "changeops_notification_failures"
)
