package activities

import (
	"context"

	"github.com/changeops/changeops/internal/notify"
)

// Notify sends one step message. The workflow retries it a few times and
// then moves on: a notification never blocks or fails a change.
func (a *Activities) Notify(ctx context.Context, e notify.Event) error {
	return a.Notifier.Notify(ctx, e)
}
