package activities

import (
	"os"
	"strconv"
	"strings"
	"testing"
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
