package activities

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/internal/notify"
)

// announceTimeout bounds the notice of a retry: it is best effort, and
// must not hold up the failure it reports.
const announceTimeout = 10 * time.Second

// retryBound is the package's retryBound for a stack's step, and it tells
// the run's thread when the failure will be retried (see announceRetry).
func (a *Activities) retryBound(ctx context.Context, in StackInput, err error) error {
	err = retryBound(ctx, in.Stack, err)
	a.announceRetry(ctx, in, err)
	return err
}

// announceRetry posts a failure that Temporal will retry to the run's
// thread: a person watching a change sees why it is slow ("waiting for
// the lock held by ...", a cloud API's throttling) and until when it is
// tried, where otherwise the thread would say nothing until the step
// gives up. The workflow cannot see an activity's retries, so the
// activity says it. Attempts 1, 2, 4, 8, ... are announced: a step that
// waits hours for a lock says so a dozen times, not hundreds.
//
// The notice is a reply in the thread and nothing else (the parent
// message and the run's ordered messages stay the workflow's); it is
// best effort, and its failure is only logged.
func (a *Activities) announceRetry(ctx context.Context, in StackInput, err error) {
	var ae *temporal.ApplicationError
	if err == nil || in.Notice == nil || a.Notifier == nil || errors.Is(err, context.Canceled) ||
		(errors.As(err, &ae) && ae.NonRetryable()) {
		return
	}
	info := activity.GetInfo(ctx)
	if !announced(info.Attempt) {
		return
	}
	e := *in.Notice
	e.Kind = notify.KindRetrying
	e.Step, e.Detail = retryNotice(in, err, int(info.Attempt), info.ScheduledTime)
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	if err := a.Notifier.Notify(nctx, &notify.Delivery{Event: e, Thread: e.Thread, Attempt: 1}); err != nil {
		stackLog(ctx, in).Warn("retry not announced", "error", err)
	}
}

// announced says whether a failed attempt is announced: 1, 2, 4, 8, ...
func announced(attempt int32) bool {
	return attempt > 0 && bits.OnesCount32(uint32(attempt)) == 1
}

// retryNotice words the notice of a retried failure of a stack's step
// scheduled at since.
func retryNotice(in StackInput, err error, attempt int, since time.Time) (step, detail string) {
	limit, field, kind := retryLimit(in.Stack, err)
	msg := err.Error()
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		msg = ae.Message()
	}
	step = "retrying " + in.Stack.Name
	if kind == ErrStackLocked {
		step = "waiting for the lock on " + in.Stack.Name
	}
	detail = fmt.Sprintf("%s\nattempt %d failed; tried again until %s (stacks[].%s of %s is %s)",
		msg, attempt, since.Add(limit).UTC().Format("2006-01-02 15:04 MST"), field, in.Stack.Name, limit)
	return step, detail
}
