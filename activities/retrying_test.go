package activities

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/changeops/changeops/config"
)

func TestAnnouncedAttempts(t *testing.T) {
	var got []int32
	for a := int32(0); a <= 300; a++ {
		if announced(a) {
			got = append(got, a)
		}
	}
	want := []int32{1, 2, 4, 8, 16, 32, 64, 128, 256}
	if len(got) != len(want) {
		t.Fatalf("announced attempts %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("announced attempts %v, want %v", got, want)
		}
	}
}

func TestRetryNotice(t *testing.T) {
	since := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	in := StackInput{Stack: config.Stack{Name: "site", LockWait: config.Duration(2 * time.Hour)}}
	for _, tc := range []struct {
		err        error
		step, want string
	}{
		{temporal.NewApplicationError("apply stack site (dev) at abc1234: waiting for the lock held by ann@laptop (pid 7)", ErrStackLocked),
			"waiting for the lock on site", "waiting for the lock held by ann@laptop (pid 7)\nattempt 2 failed; tried again until 2026-12-02 12:00 UTC (stacks[].lock_wait of site is 2h0m0s)"},
		{temporal.NewApplicationError("apply stack site (dev) at abc1234: 429 Too Many Requests", ErrPulumiTransient),
			"retrying site", "429 Too Many Requests\nattempt 2 failed; tried again until 2026-12-02 10:10 UTC (stacks[].apply_retry_for of site is 10m0s)"},
		{errors.New("connection reset"), "retrying site", "connection reset\nattempt 2 failed"},
	} {
		step, detail := retryNotice(in, tc.err, 2, since)
		if step != tc.step || !strings.Contains(detail, tc.want) {
			t.Errorf("retryNotice(%v) = %q, %q; want %q containing %q", tc.err, step, detail, tc.step, tc.want)
		}
	}
}
