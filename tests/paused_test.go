package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/starter"
)

// A worker paused (SIGSTOP, as a stalled machine would be), not killed,
// for longer than the heartbeat timeout while its `pulumi up` holds the
// stack: Temporal gives the up to another worker, which finds the lock
// held by a live process of this machine and waits instead of cancelling
// it and running a second up beside the first. Once the paused worker
// resumes it learns it lost the activity and stops its up; the other
// worker then applies the change, once.
func TestFaultPausedWorkerIsNotASecondWriter(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t, "paused", config.Stack{Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto},
		siteProject("stacks/site", "/nonexistent/unused", "v1"))
	page := filepath.Join(f.dir, "page.txt")
	w1 := startWorkerProcess(t, f.cfg, "worker1", []string{"CHANGEOPS_FILE_PAUSE=page.txt", "CHANGEOPS_FILE_PAUSE_OP=create", "CHANGEOPS_FILE_MARKS=" + f.marks})
	waitWatching(t, f.c, f.branch)
	id := f.push("v2")
	f.waitMark("create " + page)

	// Only the worker stops; its Pulumi CLI lives on, holding the lock.
	if err := syscall.Kill(w1.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(w1.cmd.Process.Pid, syscall.SIGCONT)
		}
	}
	defer resume()
	lock := f.locksLeft()
	if len(lock) != 1 {
		t.Fatalf("the paused up holds locks %q, want one", lock)
	}
	// The paused worker still holds its HTTP port.
	cfg2 := *f.cfg
	cfg2.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", freePort())
	startWorkerProcess(t, &cfg2, "worker2", nil)
	waitFor(t, 3*time.Minute, "the second worker refusing to take the live process's lock", func() (bool, string) {
		run, err := starter.Status(context.Background(), f.c, id)
		if err != nil {
			return false, err.Error()
		}
		r := strings.Join(run.Retrying, "; ")
		return strings.Contains(r, "a live process: it is not the attempt that died"), r
	})
	if now := f.locksLeft(); len(now) != 1 || now[0] != lock[0] {
		t.Fatalf("locks while the first worker is paused = %q, want its own %q untouched", now, lock)
	}

	resume()
	run := waitState(t, f.c, id, 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack, contract.StateRollbackFailed)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	fileIs(t, page, "v2")
	if n := resourcesOfType(t, f.cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("%d files in the state, want 1", n)
	}
	if l := f.locksLeft(); len(l) != 0 {
		t.Errorf("locks left on the stack: %q", l)
	}
	if a := run.Status.Applies; len(a) != 1 || len(a[0].Recovered) != 0 {
		t.Errorf("apply = %+v; want one, which took no lock from anyone", a)
	}
}
