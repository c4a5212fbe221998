// Package ratelimit is the token bucket that bounds how fast one party may
// do something: connects to a gateway (per node and per source address) and
// the frames one socket's client sends.
//
// A Bucket is only its state; the rate and burst come with each call, so a
// limiter holding many buckets of one kind (one per address, one per socket)
// keeps them once.
package ratelimit

import "time"

// Bucket holds tokens that refill at a rate up to a burst; each action
// takes one. The zero Bucket is full. It is not safe for concurrent use:
// its owner serialises the calls.
type Bucket struct {
	// tokens may be negative: tokens reserved ahead (Reserve) are owed.
	tokens float64
	// last is when tokens was brought up to date; zero: never used.
	last time.Time
}

// refill adds the tokens earned since the last call, up to burst.
func (b *Bucket) refill(now time.Time, rate, burst float64) {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
	}
	b.last = now
}

// Allow takes a token if one is there, and reports whether it did.
func (b *Bucket) Allow(now time.Time, rate, burst float64) bool {
	b.refill(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Reserve takes the next token if it comes within maxWait, and says how
// long to wait for it. Tokens taken ahead are owed, so waiters are served
// at the rate, in turn; a refused reservation owes nothing.
func (b *Bucket) Reserve(now time.Time, rate, burst float64, maxWait time.Duration) (time.Duration, bool) {
	b.refill(now, rate, burst)
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
	if wait > maxWait {
		return 0, false
	}
	b.tokens--
	return wait, true
}
