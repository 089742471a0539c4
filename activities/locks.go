package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"go.temporal.io/sdk/temporal"
)

// lockHolder is a DIY backend's lock file, as the Pulumi CLI writes it.
type lockHolder struct {
	Pid       int       `json:"pid"`
	Username  string    `json:"username"`
	Hostname  string    `json:"hostname"`
	Timestamp time.Time `json:"timestamp"`
}

func (l lockHolder) String() string {
	return fmt.Sprintf("%s@%s (pid %d) since %s", l.Username, l.Hostname, l.Pid, l.Timestamp.Format(time.RFC3339))
}

// alive says whether the holder is a live process on this machine; ok is
// false when that cannot be told (another machine).
func (l lockHolder) alive() (alive, ok bool) {
	host, err := os.Hostname()
	if err != nil || host != l.Hostname || l.Pid <= 0 {
		return false, false
	}
	err = syscall.Kill(l.Pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM), true
}

// stackLocks reads the locks of a stack on a file:// backend; known is
// false for other backends, whose locks changeops cannot read.
func stackLocks(backendURL, project, stack string) (locks []lockHolder, known bool) {
	u, err := url.Parse(backendURL)
	if err != nil || u.Scheme != "file" {
		return nil, false
	}
	dir := filepath.Join(u.Path, ".pulumi", "locks", "organization", project, stack)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, errors.Is(err, os.ErrNotExist)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		var l lockHolder
		if json.Unmarshal(b, &l) == nil {
			locks = append(locks, l)
		}
	}
	return locks, true
}

// deadGrace is how long an attempt that finds its predecessor "died"
// (its heartbeats stopped) waits for that predecessor's lock to go before
// cancelling it. A predecessor that was only slow (a stalled machine)
// learns from its next heartbeat that it lost the activity, cancels its
// update and releases the lock within that time; one that died never does.
const deadGrace = 90 * time.Second

// awaitDeadLock decides whether the lock a dead attempt seems to have left
// may be cancelled: at once when the lock's holder is a process of this
// machine that is gone; never (a retryable ErrStackLocked) when it is a
// live process of this machine; otherwise after deadGrace, unless the lock
// went away meanwhile (then there is nothing to cancel: cancel is false).
func (a *Activities) awaitDeadLock(ctx context.Context, stack auto.Stack, in StackInput, progress *heartbeat) (cancel bool, err error) {
	project, err := stack.Workspace().ProjectSettings(ctx)
	if err != nil {
		return true, nil // unreadable project: behave as before, cancel
	}
	read := func() ([]lockHolder, bool) {
		return stackLocks(pulumiBackend(a.Pulumi.BackendURL), string(project.Name), in.Stack.Stack)
	}
	var note io.Writer = io.Discard
	if progress != nil {
		note = progress
	}
	cancel, live, err := awaitLocks(ctx, read, deadGrace, 5*time.Second, note)
	if live != nil {
		return false, temporal.NewApplicationError(fmt.Sprintf("stack %s (%s): waiting for the lock held by %s, a live process: it is not the attempt that died, and is left alone",
			in.Stack.Name, in.Stack.Stack, live), ErrStackLocked)
	}
	return cancel, err
}

// awaitLocks is awaitDeadLock's decision over the locks read returns,
// polled every so often for up to grace; live is the holder that is a live
// process of this machine, if any.
func awaitLocks(ctx context.Context, read func() ([]lockHolder, bool), grace, every time.Duration, progress io.Writer) (cancel bool, live *lockHolder, err error) {
	deadline := time.Now().Add(grace)
	for {
		locks, known := read()
		if known && len(locks) == 0 {
			return false, nil, nil
		}
		undecided := !known
		for _, l := range locks {
			switch alive, ok := l.alive(); {
			case ok && alive:
				return false, &l, nil
			case !ok:
				undecided = true
			}
		}
		if !undecided || !time.Now().Before(deadline) {
			return true, nil, nil
		}
		fmt.Fprintf(progress, "waiting up to %s for the lock of the attempt that stopped heartbeating\n", time.Until(deadline).Round(time.Second))
		select {
		case <-ctx.Done():
			return false, nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// lockLine is one lock as the engine describes it when it refuses an
// update on a locked DIY stack.
var lockLine = regexp.MustCompile(`created by (\S+)@(\S+) \(pid (\d+)\) at (\S+)`)

// parseLocks reads the locks the engine lists in its refusal.
func parseLocks(msg string) []lockHolder {
	var locks []lockHolder
	for _, m := range lockLine.FindAllStringSubmatch(msg, -1) {
		pid, _ := strconv.Atoi(m[3])
		at, _ := time.Parse(time.RFC3339, m[4])
		locks = append(locks, lockHolder{Username: m[1], Hostname: m[2], Pid: pid, Timestamp: at})
	}
	return locks
}

// pulumiBackend is the backend URL without its query (file://…?metadata=skip).
func pulumiBackend(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i]
	}
	return raw
}
