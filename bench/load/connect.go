package load

import (
	"context"
	"errors"
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

// ConnectAll connects users into pool, at most concurrency at once, each
// from the next dialer in turn (one per source address). A connect the
// server answers with code 9 is retried after a short pause, as the SDK
// would; any other failure counts as failed.
func ConnectAll(ctx context.Context, pool *Pool, dialers []*Dialer, users []string, concurrency int) Connected {
	began := time.Now()
	var failed, retries atomic.Int64
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, u := range users {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		d := dialers[i%len(dialers)]
		wg.Go(func() {
			defer func() { <-sem }()
			for attempt := 0; ; attempt++ {
				c, err := d.Dial(ctx, u)
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
