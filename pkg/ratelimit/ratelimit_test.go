package ratelimit

import (
	"testing"
	"time"
)

func TestReserveServesWaitersAtTheRateInTurn(t *testing.T) {
	now := time.Unix(0, 0)
	var b Bucket
	const rate, burst = 10, 1 // one token per 100 ms, one at once
	for i, want := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
		wait, ok := b.Reserve(now, rate, burst, time.Second)
		if !ok || (wait-want).Abs() > time.Millisecond {
			t.Fatalf("reserve %d = %v, %v; want %v, true", i, wait, ok, want)
		}
	}
	if wait, ok := b.Reserve(now, rate, burst, 250*time.Millisecond); ok {
		t.Fatalf("a fourth reservation was given a turn %v away, past its 250 ms budget", wait)
	}
	// The refused one owes nothing: 300 ms on, the three turns taken are
	// past, a token is there and the next one is 100 ms away.
	now = now.Add(300 * time.Millisecond)
	for i, want := range []time.Duration{0, 100 * time.Millisecond} {
		if wait, ok := b.Reserve(now, rate, burst, time.Second); !ok || (wait-want).Abs() > time.Millisecond {
			t.Fatalf("after 300 ms, reserve %d = %v, %v; want %v, true", i, wait, ok, want)
		}
	}
}

func TestAllowLetsABurstThroughThenTheRate(t *testing.T) {
	now := time.Unix(1000, 0)
	var b Bucket
	const rate, burst = 20, 50
	for i := range 50 {
		if !b.Allow(now, rate, burst) {
			t.Fatalf("action %d of the first burst of 50 refused", i)
		}
	}
	if b.Allow(now, rate, burst) {
		t.Fatal("the 51st action at the same instant was allowed past a burst of 50")
	}
	// 20 a second sustained goes through for as long as it lasts.
	for i := range 1000 {
		now = now.Add(50 * time.Millisecond)
		if !b.Allow(now, rate, burst) {
			t.Fatalf("action %d at exactly the rate refused", i)
		}
	}
	// 25 a second drains the burst (0.2 tokens an action) and is refused
	// after about 50/0.2 = 250 actions.
	b = Bucket{}
	refused := -1
	for i := range 400 {
		now = now.Add(40 * time.Millisecond)
		if !b.Allow(now, rate, burst) {
			refused = i
			break
		}
	}
	if refused < 240 || refused > 260 {
		t.Fatalf("25 actions a second refused at action %d, want about 250", refused)
	}
}

func TestAClockGoingBackEarnsNothingAndStallsNothing(t *testing.T) {
	now := time.Unix(1000, 0)
	var b Bucket
	b.Allow(now, 1, 1)
	if b.Allow(now.Add(-time.Hour), 1, 1) {
		t.Fatal("a clock set back an hour earned a token")
	}
	// From the earlier time on, tokens are earned again at the rate.
	if !b.Allow(now.Add(-time.Hour+time.Second), 1, 1) {
		t.Fatal("a second after the clock went back, no token was earned")
	}
}
