package activities

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseLocksAndLiveness(t *testing.T) {
	host, _ := os.Hostname()
	msg := "error: the stack is currently locked by 2 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.\n" +
		"  postgres://db/pulumi/.pulumi/locks/organization/site/test/a.json: created by bob@laptop (pid 123) at 2026-12-02T10:00:00Z\n" +
		"  postgres://db/pulumi/.pulumi/locks/organization/site/test/b.json: created by changeops@" + host + " (pid " + strconv.Itoa(os.Getpid()) + ") at 2026-12-02T10:01:00Z"
	locks := parseLocks(msg)
	if len(locks) != 2 || locks[0].String() != "bob@laptop (pid 123) since 2026-12-02T10:00:00Z" {
		t.Fatalf("locks = %+v", locks)
	}
	if _, ok := locks[0].alive(); ok {
		t.Error("a lock of another machine was judged")
	}
	if alive, ok := locks[1].alive(); !ok || !alive {
		t.Errorf("this process's lock: alive %v, known %v", alive, ok)
	}
	gone := lockHolder{Hostname: host, Pid: 1 << 30}
	if alive, ok := gone.alive(); !ok || alive {
		t.Errorf("a gone process of this machine: alive %v, known %v", alive, ok)
	}
	if owner, ok := lockedBy(errString(msg)); !ok || !strings.HasPrefix(owner, "bob@laptop (pid 123)") {
		t.Errorf("lockedBy = %q, %v", owner, ok)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// What an attempt that finds its predecessor "died" does with the stack's
// lock: never takes it from a live process of this machine (a worker that
// was only paused), takes it at once from a gone one, and gives a holder
// it cannot judge the grace period to release it.
func TestAwaitLocks(t *testing.T) {
	host, _ := os.Hostname()
	mine := lockHolder{Username: "changeops", Hostname: host, Pid: os.Getpid()}
	gone := lockHolder{Username: "changeops", Hostname: host, Pid: 1 << 30}
	remote := lockHolder{Username: "changeops", Hostname: "elsewhere", Pid: 42}
	fixed := func(locks []lockHolder, known bool) func() ([]lockHolder, bool) {
		return func() ([]lockHolder, bool) { return locks, known }
	}
	ctx := context.Background()
	cases := []struct {
		name       string
		read       func() ([]lockHolder, bool)
		wantCancel bool
		wantLive   bool
		minWait    time.Duration
	}{
		{"a live process of this machine", fixed([]lockHolder{mine}, true), false, true, 0},
		{"a gone process of this machine", fixed([]lockHolder{gone}, true), true, false, 0},
		{"no lock", fixed(nil, true), false, false, 0},
		{"another machine, never released", fixed([]lockHolder{remote}, true), true, false, 300 * time.Millisecond},
		{"a backend whose locks cannot be read", fixed(nil, false), true, false, 300 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			cancel, live, err := awaitLocks(ctx, c.read, 300*time.Millisecond, 10*time.Millisecond, io.Discard)
			if err != nil || cancel != c.wantCancel || (live != nil) != c.wantLive {
				t.Fatalf("cancel %v, live %v, err %v; want cancel %v, live %v", cancel, live, err, c.wantCancel, c.wantLive)
			}
			if took := time.Since(start); took < c.minWait {
				t.Fatalf("decided after %s, want a grace of %s first", took, c.minWait)
			}
		})
	}
	// Released by its (remote) holder during the grace: nothing to cancel.
	n := 0
	released := func() ([]lockHolder, bool) {
		if n++; n < 3 {
			return []lockHolder{remote}, true
		}
		return nil, true
	}
	if cancel, _, _ := awaitLocks(ctx, released, time.Minute, 10*time.Millisecond, io.Discard); cancel {
		t.Fatal("cancelled a lock its holder released during the grace")
	}
}

// stackLocks reads a file:// backend's lock files where the Pulumi CLI
// writes them, and knows nothing of other backends.
func TestStackLocksOnFileBackend(t *testing.T) {
	state := t.TempDir()
	if locks, known := stackLocks("file://"+state, "site", "test"); !known || len(locks) != 0 {
		t.Fatalf("no lock folder: %v, %v", locks, known)
	}
	dir := state + "/.pulumi/locks/organization/site/test"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock := `{"pid":7,"username":"bob","hostname":"laptop","timestamp":"2026-12-02T10:00:00Z"}`
	if err := os.WriteFile(dir+"/0b4c.json", []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	locks, known := stackLocks("file://"+state, "site", "test")
	if !known || len(locks) != 1 || locks[0].String() != "bob@laptop (pid 7) since 2026-12-02T10:00:00Z" {
		t.Fatalf("locks = %v, %v", locks, known)
	}
	if _, known := stackLocks("postgres://db/pulumi", "site", "test"); known {
		t.Fatal("a PostgreSQL backend's locks were taken as known")
	}
}
