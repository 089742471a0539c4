package notify

import (
	"context"
	"log/slog"
	"strings"

	"github.com/changeops/changeops/contract"
)

// Console logs every event; it is always on, so a run is traceable from the
// worker's log even without Slack.
type Console struct {
	Logger *slog.Logger
}

func (c Console) Notify(ctx context.Context, d *Delivery) error {
	e := d.Event
	attrs := []any{
		"run", e.RunID,
		"commit", contract.ShortSHA(e.Commit),
		"stacks", strings.Join(e.Stacks, ","),
		"state", e.State,
		"detail", e.Detail,
	}
	if d.Attempt > 1 {
		attrs = append(attrs, "attempt", d.Attempt)
	}
	c.Logger.InfoContext(ctx, e.Step, attrs...)
	return nil
}
