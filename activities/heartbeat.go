package activities

import (
	"context"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeat reports progress while a long Pulumi call runs: the last line
// the engine printed goes into the heartbeat details, so a person watching
// the activity in the UI sees what it is doing, and Temporal learns quickly
// when the worker running it has died.
type heartbeat struct {
	lines chan string
	done  chan struct{}
}

func startHeartbeat(ctx context.Context, every time.Duration, what string) *heartbeat {
	h := &heartbeat{lines: make(chan string, 64), done: make(chan struct{})}
	go h.run(ctx, every, what)
	return h
}

func (h *heartbeat) run(ctx context.Context, every time.Duration, what string) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := "starting"
	activity.RecordHeartbeat(ctx, what+": "+last)
	for {
		select {
		case <-h.done:
			return
		case <-ctx.Done():
			return
		case line := <-h.lines:
			last = line
		case <-t.C:
			activity.RecordHeartbeat(ctx, what+": "+last)
		}
	}
}

// Write takes the engine's progress output.
func (h *heartbeat) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			select {
			case h.lines <- line:
			default: // never block the engine on heartbeats
			}
		}
	}
	return len(p), nil
}

// Stop ends the heartbeats.
func (h *heartbeat) Stop() { close(h.done) }
