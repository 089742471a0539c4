package activities

import (
	"context"
	"errors"

	"github.com/slack-go/slack"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/internal/notify"
)

// ErrRateLimited: the chat service asked us to slow down; the activity is
// retried after the delay it named.
const ErrRateLimited = "RateLimited"

// Notify sends one step message and returns where the run's thread stands
// afterwards. The workflow retries it a few times and then moves on: a
// notification never blocks or fails a change.
//
// A retried attempt resumes from the thread the last attempt recorded (its
// heartbeat), so it never posts the run's parent message twice; a rate
// limit is retried after the delay the service asked for.
func (a *Activities) Notify(ctx context.Context, e notify.Event) (notify.Thread, error) {
	info := activity.GetInfo(ctx)
	d := &notify.Delivery{Event: e, Thread: e.Thread, Attempt: int(info.Attempt)}
	if activity.HasHeartbeatDetails(ctx) {
		var saved notify.Thread
		if err := activity.GetHeartbeatDetails(ctx, &saved); err == nil {
			d.Thread = saved
		}
	}
	d.Checkpoint = func(th notify.Thread) { activity.RecordHeartbeat(ctx, th) }
	err := a.Notifier.Notify(ctx, d)
	var limited *slack.RateLimitedError
	if errors.As(err, &limited) {
		return d.Thread, temporal.NewApplicationErrorWithOptions(err.Error(), ErrRateLimited,
			temporal.ApplicationErrorOptions{NextRetryDelay: limited.RetryAfter, Cause: err})
	}
	return d.Thread, err
}
