package activities

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// stillRunning says whether a process whose command line holds marker is
// alive.
func stillRunning(t *testing.T, marker string) bool {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", marker).Output()
	return strings.TrimSpace(string(out)) != ""
}

// A check that leaves a background child holding its output ends when
// its command does, is judged by the command's exit status, and leaves
// nothing running.
func TestCheckThatForksASleeper(t *testing.T) {
	marker := fmt.Sprintf("sleep %d.%d", 300+os.Getpid()%100, time.Now().Nanosecond()%1000)
	start := time.Now()
	ok, detail := runCommand(context.Background(), t.TempDir(), []string{"sh", "-c", marker + " & echo started"}, nil)
	if !ok || detail != "started" {
		t.Fatalf("check = %v %q, want passed with its output", ok, detail)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the check took %s: it waited for its background child", took)
	}
	if stillRunning(t, marker) {
		t.Fatalf("%q is still running after the check", marker)
	}
}

// A check that outlives its timeout is killed with everything it started,
// and fails saying so.
func TestCheckKilledAtItsTimeout(t *testing.T) {
	marker := fmt.Sprintf("sleep %d.%d", 400+os.Getpid()%100, time.Now().Nanosecond()%1000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	ok, detail := runCommand(ctx, t.TempDir(), []string{"sh", "-c", "echo waiting; " + marker + " & " + marker}, nil)
	if ok || !strings.HasPrefix(detail, "timed out") || !strings.Contains(detail, "waiting") {
		t.Fatalf("check = %v %q, want failed: timed out, with its output", ok, detail)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the check took %s past its 1s timeout", took)
	}
	if stillRunning(t, marker) {
		t.Fatalf("%q is still running after the timeout", marker)
	}
}

// A check's output is bounded however much it prints.
func TestCheckOutputIsBounded(t *testing.T) {
	ok, detail := runCommand(context.Background(), t.TempDir(), []string{"sh", "-c", "yes 0123456789 | head -c 20000000; echo; echo the end; exit 3"}, nil)
	if ok || len(detail) > 600 || !strings.HasSuffix(detail, "the end") || !strings.Contains(detail, "exit status 3") {
		t.Fatalf("check = %v, %d bytes ending %q", ok, len(detail), detail[max(0, len(detail)-40):])
	}
	b := &tailBuffer{max: 10}
	fmt.Fprint(b, "0123456789abcdef")
	if b.String() != "6789abcdef" {
		t.Fatalf("tail = %q", b.String())
	}
}

// A check's output reaches status and Slack readable: colours and control
// characters are gone, and the cut keeps whole characters.
func TestCheckOutputIsReadable(t *testing.T) {
	script := `printf 'x'; i=0; while [ $i -lt 300 ]; do printf 'é'; i=$((i+1)); done; printf '\033[31mred\033[0m\a'; exit 1`
	ok, detail := runCommand(context.Background(), t.TempDir(), []string{"sh", "-c", script}, nil)
	if ok {
		t.Fatal("the check passed; want failed (exit 1)")
	}
	if strings.ContainsAny(detail, "\033\a") {
		t.Fatalf("detail keeps control characters: %q", detail)
	}
	if !utf8.ValidString(detail) {
		t.Fatalf("detail is cut inside a character: %q", detail)
	}
}
