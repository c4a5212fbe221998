package gateway

import (
	"sync"
	"time"

	"github.com/presencehq/presence/pkg/ratelimit"
)

// rateLimit bounds the node's connects per second, so a reconnect storm is
// answered with retryable errors instead of overwhelming the node.
type rateLimit struct {
	mu          sync.Mutex
	rate, burst float64
	bucket      ratelimit.Bucket
	now         func() time.Time
}

func newRateLimit(rate float64, burst int) *rateLimit {
	return &rateLimit{rate: rate, burst: float64(burst), now: time.Now}
}

// reserve takes the next token if it comes within maxWait, and says how long
// to wait for it; waiters are served at the rate, in turn.
func (r *rateLimit) reserve(maxWait time.Duration) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bucket.Reserve(r.now(), r.rate, r.burst, maxWait)
}
