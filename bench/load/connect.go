package load

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Connected is what connecting a batch of clients took.
type Connected struct {
	Conns   int           `json:"conns"`
	Failed  int           `json:"failed"`
	Retries int           `json:"retries"` // connects answered code 9 and tried again
	Took    time.Duration `json:"took_ns"`
}

// PerSecond is the connect rate.
func (c Connected) PerSecond() float64 {
	if c.Took <= 0 {
		return 0
	}
	return float64(c.Conns) / c.Took.Seconds()
}

// codeRateLimit is the SDK's code for "too many requests, retry".
const codeRateLimit = 9

// DialFunc opens the socket of users[i].
type DialFunc func(ctx context.Context, i int, user string) (Socket, error)

// ConnectAll connects users into pool, at most concurrency at once. A
// connect the server answers with code 9 is retried after a short pause,
// as the SDK would; any other failure counts as failed.
func ConnectAll(ctx context.Context, pool *Pool, dial DialFunc, users []string, concurrency int) Connected {
	began := time.Now()
	var failed, retries atomic.Int64
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, u := range users {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for attempt := 0; ; attempt++ {
				c, err := dial(ctx, i, u)
				if err == nil {
					pool.Add(c)
					return
				}
				var ce *ConnectError
				if !errors.As(err, &ce) || ce.Code != codeRateLimit || attempt >= 20 || ctx.Err() != nil {
					failed.Add(1)
					return
				}
				retries.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
	return Connected{Conns: pool.Len(), Failed: int(failed.Load()), Retries: int(retries.Load()), Took: time.Since(began)}
}

// Backoff is a client SDK's wait before its n-th reconnect attempt after a
// drop (n from 0).
type Backoff func(n int) time.Duration

// StreamBackoff is the Stream SDK's: after its socket drops it waits
// retryInterval(1), then retryInterval(failures) — random in
// [max(250, (k−1)·2000), min(500+k·2000, 25000)] ms.
func StreamBackoff(n int) time.Duration {
	k := n + 1
	hi := min(500+k*2000, 25000)
	lo := min(max(250, (k-1)*2000), 25000)
	ms := lo
	if hi > lo {
		ms += rand.IntN(hi - lo)
	}
	return time.Duration(ms) * time.Millisecond
}

// CentrifugeBackoff is centrifuge-js's: full jitter, min 500 ms, max 20 s —
// 500 ms plus random up to min(20 s, 500 ms·2^n).
func CentrifugeBackoff(n int) time.Duration {
	const lo, hi = 500, 20000
	span := min(hi, lo<<min(n, 16))
	return time.Duration(min(hi, lo+rand.IntN(span+1))) * time.Millisecond
}

// Reconnect connects users into pool again as SDK clients whose sockets
// just dropped: each waits backoff(0), tries, and after each failure waits
// the next backoff, until connected or ctx ends. Retries counts the failed
// attempts; Failed the users that never made it.
func Reconnect(ctx context.Context, pool *Pool, dial DialFunc, users []string, backoff Backoff) Connected {
	began := time.Now()
	var failed, retries, conns atomic.Int64
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			for n := 0; ; n++ {
				t := time.NewTimer(backoff(n))
				select {
				case <-ctx.Done():
					t.Stop()
					failed.Add(1)
					return
				case <-t.C:
				}
				c, err := dial(ctx, i, u)
				if err == nil {
					pool.Add(c)
					conns.Add(1)
					return
				}
				retries.Add(1)
			}
		})
	}
	wg.Wait()
	return Connected{Conns: int(conns.Load()), Failed: int(failed.Load()), Retries: int(retries.Load()), Took: time.Since(began)}
}
