package load

import (
	"testing"
	"time"
)

func TestBackoffsStayWithinTheirSDKsBounds(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		backoff Backoff
		n       int
		lo, hi  time.Duration
	}{
		{"Stream's first reconnect after a drop waits 250 ms to 2.5 s", StreamBackoff, 0, 250 * ms, 2500 * ms},
		{"Stream's after one failed attempt waits 2 to 4.5 s", StreamBackoff, 1, 2000 * ms, 4500 * ms},
		{"Stream's never waits more than 25 s", StreamBackoff, 40, 25000 * ms, 25000 * ms},
		{"centrifuge-js's first reconnect waits 500 ms to 1 s", CentrifugeBackoff, 0, 500 * ms, 1000 * ms},
		{"centrifuge-js's third waits 500 ms to 2.5 s", CentrifugeBackoff, 2, 500 * ms, 2500 * ms},
		{"centrifuge-js's never waits more than 20 s", CentrifugeBackoff, 40, 500 * ms, 20000 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 200 {
				if d := tc.backoff(tc.n); d < tc.lo || d > tc.hi {
					t.Fatalf("backoff(%d) = %s, want within [%s, %s]", tc.n, d, tc.lo, tc.hi)
				}
			}
		})
	}
}
