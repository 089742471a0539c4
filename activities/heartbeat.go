package activities

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeat reports progress while a long Pulumi call runs: the last line
// the engine printed goes into the heartbeat details, so a person watching
// the activity in the UI sees what it is doing, and Temporal learns quickly
// when the worker running it has died.
type heartbeat struct {
	ctx      context.Context
	lines    chan string
	done     chan struct{}
	what     string
	updating atomic.Bool
}

// Progress is what a long Pulumi activity heartbeats: the engine's last
// line, for people watching in the UI, and InFlight, set while the
// attempt runs and cleared when it returns, so that the next attempt can
// tell an attempt that ended (and released what it held) from one that
// died in the middle of an engine operation (and left the stack locked).
type Progress struct {
	Line     string
	InFlight bool
	// Updating is set once up started changing resources.
	Updating bool `json:",omitempty"`
}

func startHeartbeat(ctx context.Context, every time.Duration, what string) *heartbeat {
	h := &heartbeat{ctx: ctx, lines: make(chan string, 64), done: make(chan struct{}), what: what}
	// An update an earlier attempt began stays begun: every heartbeat
	// carries that on to the next attempt.
	h.updating.Store(previousBegan(ctx))
	// The first heartbeat goes out at once, so a retry can always tell
	// that this attempt started.
	activity.RecordHeartbeat(ctx, Progress{Line: what + ": starting", InFlight: true, Updating: h.updating.Load()})
	go h.run(ctx, every, what)
	return h
}

func (h *heartbeat) run(ctx context.Context, every time.Duration, what string) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := "starting"
	for {
		select {
		case <-h.done:
			return
		case <-ctx.Done():
			return
		case line := <-h.lines:
			last = line
		case <-t.C:
			activity.RecordHeartbeat(ctx, Progress{Line: what + ": " + last, InFlight: true, Updating: h.updating.Load()})
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

// Updating records that up started: from now on, a retry after this
// attempt dies is resuming an update already under way.
func (h *heartbeat) Updating() {
	h.updating.Store(true)
	activity.RecordHeartbeat(h.ctx, Progress{Line: h.what + ": updating", InFlight: true, Updating: true})
}

// Stop ends the heartbeats and records that the attempt returned: a
// failed attempt's last details reach the next attempt with its failure.
func (h *heartbeat) Stop() {
	close(h.done)
	activity.RecordHeartbeat(h.ctx, Progress{Line: h.what + ": returned", Updating: h.updating.Load()})
}

// previousDied says whether the attempt before this one died in the
// middle of an engine operation: it heartbeat InFlight and never
// returned (its worker was killed, or lost). Temporal only starts this
// attempt once that one's heartbeat timed out, so it is not running.
func previousDied(ctx context.Context) (died, updating bool) {
	if activity.GetInfo(ctx).Attempt < 2 || !activity.HasHeartbeatDetails(ctx) {
		return false, false
	}
	var p Progress
	if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
		return false, false // an older worker's details: nothing known
	}
	return diedIn(activity.GetInfo(ctx).Attempt, p)
}

// previousBegan says whether an earlier attempt of this activity began
// updating resources, whether it died or returned a failure.
func previousBegan(ctx context.Context) bool {
	if activity.GetInfo(ctx).Attempt < 2 || !activity.HasHeartbeatDetails(ctx) {
		return false
	}
	var p Progress
	return activity.GetHeartbeatDetails(ctx, &p) == nil && p.Updating
}

// diedIn reads the previous attempt's last progress: only an attempt that
// was in flight when its heartbeats stopped died in the middle; one that
// returned (an error, say "the stack is locked" by a person's own `pulumi
// up`) cleared InFlight on its way out, and what holds the stack then is
// alive and left alone.
func diedIn(attempt int32, last Progress) (died, updating bool) {
	if attempt < 2 || !last.InFlight {
		return false, false
	}
	return true, last.Updating
}
