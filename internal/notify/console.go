package notify

import (
	"context"
	"log/slog"
	"strings"
)

// Console logs every event; it is always on, so a run is traceable from the
// worker's log even without Slack.
type Console struct {
	Logger *slog.Logger
}

func (c Console) Notify(ctx context.Context, e Event) error {
	c.Logger.InfoContext(ctx, e.Step,
		"run", e.RunID,
		"commit", ShortSHA(e.Commit),
		"stacks", strings.Join(e.Stacks, ","),
		"state", e.State,
		"detail", e.Detail,
	)
	return nil
}
