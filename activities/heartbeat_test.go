package activities

import "testing"

// Only an attempt that died in flight lets the next one clear the stack.
func TestDiedIn(t *testing.T) {
	cases := []struct {
		name          string
		attempt       int32
		last          Progress
		died, resumed bool
	}{
		{"first attempt", 1, Progress{InFlight: true}, false, false},
		{"previous returned an error", 2, Progress{Line: "up web: returned"}, false, false},
		{"previous killed while previewing", 2, Progress{InFlight: true}, true, false},
		{"previous killed while updating", 3, Progress{InFlight: true, Updating: true}, true, true},
	}
	for _, c := range cases {
		died, resumed := diedIn(c.attempt, c.last)
		if died != c.died || resumed != c.resumed {
			t.Errorf("%s: diedIn = %v, %v; want %v, %v", c.name, died, resumed, c.died, c.resumed)
		}
	}
}
