package gateway

import (
	"testing"
	"time"
)

func TestRateLimitServesWaitersAtTheRateInTurn(t *testing.T) {
	now := time.Unix(0, 0)
	r := newRateLimit(10, 1) // one token per 100 ms, one at once
	r.now = func() time.Time { return now }
	for i, want := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
		wait, ok := r.reserve(time.Second)
		if !ok || (wait-want).Abs() > time.Millisecond {
			t.Fatalf("reserve %d = %v, %v; want %v, true", i, wait, ok, want)
		}
	}
	if wait, ok := r.reserve(250 * time.Millisecond); ok {
		t.Fatalf("a fourth connect was given a turn %v away, past its 250 ms budget", wait)
	}
	// The refused one owes nothing: 300 ms on, the three turns taken are
	// past, a token is there and the next one is 100 ms away.
	now = now.Add(300 * time.Millisecond)
	for i, want := range []time.Duration{0, 100 * time.Millisecond} {
		if wait, ok := r.reserve(time.Second); !ok || (wait-want).Abs() > time.Millisecond {
			t.Fatalf("after 300 ms, reserve %d = %v, %v; want %v, true", i, wait, ok, want)
		}
	}
}
