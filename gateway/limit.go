package gateway

import (
	"sync"
	"time"
)

// rateLimit is a token bucket bounding connects per second, so a reconnect
// storm is answered with retryable errors instead of overwhelming the node.
type rateLimit struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newRateLimit(rate float64, burst int) *rateLimit {
	return &rateLimit{rate: rate, burst: float64(burst), tokens: float64(burst), now: time.Now}
}

// reserve takes the next token if it comes within maxWait, and says how long
// to wait for it; tokens taken ahead are owed, so waiters are served at the
// rate, in turn.
func (r *rateLimit) reserve(maxWait time.Duration) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !r.last.IsZero() {
		r.tokens = min(r.burst, r.tokens+now.Sub(r.last).Seconds()*r.rate)
	}
	r.last = now
	if r.tokens >= 1 {
		r.tokens--
		return 0, true
	}
	wait := time.Duration((1 - r.tokens) / r.rate * float64(time.Second))
	if wait > maxWait {
		return 0, false
	}
	r.tokens--
	return wait, true
}
