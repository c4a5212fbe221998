package load

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ChurnParams sizes a churn run.
type ChurnParams struct {
	// Users churn, spread over Channels channels; each channel has one
	// watcher (one socket per channel keeps each watcher's event rate a
	// fraction of the total).
	Users    int
	Channels int
	Prefix   string
	// Rates are the steps, in transitions per second, each held for Step.
	Rates []float64
	Step  time.Duration
	// MaxLag: a step holds only if its p99 lag stays under it.
	MaxLag time.Duration
	// Started, when set, is called once the watchers are in place, as the
	// first step begins.
	Started func()
}

// ChurnStep is one rate's outcome.
type ChurnStep struct {
	Rate     float64 `json:"rate"`
	Started  int     `json:"started"`
	Resolved int     `json:"resolved"` // transitions a watcher saw
	Failed   int     `json:"failed"`   // connects that failed
	Short    int     `json:"short"`    // transitions due with no user free to make them
	// PerSec is the transitions seen per second.
	PerSec float64 `json:"per_sec"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	Held   bool    `json:"held"`
}

// ChurnResult is the whole run: the steps in order, and the highest rate
// of transitions seen per second over a step that held.
type ChurnResult struct {
	Steps             []ChurnStep `json:"steps"`
	TransitionsPerSec float64     `json:"transitions_per_sec"`
}

// Groups is the membership churn and storm use: users prefix-000000 … in
// channels prefix-ch-000 … in turn, each channel with one watcher,
// prefix-w-000 …, listed first.
func Groups(prefix string, users, channels int) map[string][]string {
	chs := map[string][]string{}
	for j := range channels {
		chs[ChannelName(prefix, j)] = []string{WatcherName(prefix, j)}
	}
	for i := range users {
		ch := ChannelName(prefix, i%channels)
		chs[ch] = append(chs[ch], UserName(prefix, i))
	}
	return chs
}

// UserName, ChannelName and WatcherName name the i-th user, j-th channel
// and its watcher of Groups.
func UserName(prefix string, i int) string    { return fmt.Sprintf("%s-%06d", prefix, i) }
func ChannelName(prefix string, j int) string { return fmt.Sprintf("%s-ch-%03d", prefix, j) }
func WatcherName(prefix string, j int) string { return fmt.Sprintf("%s-w-%03d", prefix, j) }

// Churn: users connect and disconnect in a loop, at each rate of the
// steps in turn, while one watcher per channel reads their changes. A
// user's next transition waits until a watcher has seen its last, so lag
// that grows shows as transitions that are due with no user free to make
// them. Lag is from the connect (or close) call to the watcher reading the
// change. A step holds when at least 90% of its transitions were made and
// 99% of them seen, with the p99 lag under MaxLag; the run stops after the
// first step that does not hold.
func Churn(ctx context.Context, sys System, p ChurnParams) (ChurnResult, error) {
	chs := Groups(p.Prefix, p.Users, p.Channels)
	if err := sys.Setup(ctx, chs); err != nil {
		return ChurnResult{}, err
	}
	index := make(map[string]int, p.Users)
	for i := range p.Users {
		index[UserName(p.Prefix, i)] = i
	}
	// A user is free for its next transition once its call has returned
	// and a watcher has seen the change, in either order.
	type pending struct {
		online       bool
		start        time.Time
		step         int
		seen, called bool
	}
	var (
		mu      sync.Mutex
		waiting = map[int]pending{}
		lags    = make([][]time.Duration, len(p.Rates))
	)
	free := make(chan int, p.Users)
	on := func(c Change) {
		i, ok := index[c.User]
		if !ok {
			return
		}
		mu.Lock()
		w, ok := waiting[i]
		release := false
		if ok && !w.seen && w.online == c.Online {
			lags[w.step] = append(lags[w.step], c.At.Sub(w.start))
			w.seen = true
			waiting[i] = w
			if release = w.called; release {
				delete(waiting, i)
			}
		}
		mu.Unlock()
		if release {
			free <- i
		}
	}
	called := func(i int) {
		mu.Lock()
		w := waiting[i]
		w.called = true
		waiting[i] = w
		release := w.seen
		if release {
			delete(waiting, i)
		}
		mu.Unlock()
		if release {
			free <- i
		}
	}
	pool := NewPool(25 * time.Second)
	defer pool.Close()
	for j := range p.Channels {
		ch := ChannelName(p.Prefix, j)
		w, err := sys.Watch(ctx, j, chs[ch][0], []string{ch}, on)
		if err != nil {
			return ChurnResult{}, fmt.Errorf("watcher of %s: %w", ch, err)
		}
		pool.Add(w)
	}
	for i := range p.Users {
		free <- i
	}
	if p.Started != nil {
		p.Started()
	}

	conns := make([]Socket, p.Users)
	var res ChurnResult
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var seq atomic.Int64
	steps := make([]ChurnStep, len(p.Rates))
	for s, rate := range p.Rates {
		st := &steps[s]
		st.Rate = rate
		var failed atomic.Int64
		began := time.Now()
		tick := time.NewTicker(2 * time.Millisecond)
		for now := began; now.Sub(began) < p.Step; {
			select {
			case <-ctx.Done():
				tick.Stop()
				return res, ctx.Err()
			case now = <-tick.C:
			}
			due := int(rate*now.Sub(began).Seconds()) - st.Started - st.Short
			for range due {
				var i int
				select {
				case i = <-free:
				default:
					st.Short++
					continue
				}
				st.Started++
				online := conns[i] == nil
				mu.Lock()
				waiting[i] = pending{online: online, start: time.Now(), step: s}
				mu.Unlock()
				wg.Go(func() {
					if !online {
						conns[i].Close()
						conns[i] = nil
						called(i)
						return
					}
					c, err := sys.Member(ctx, int(seq.Add(1)), UserName(p.Prefix, i), []string{ChannelName(p.Prefix, i%p.Channels)})
					if err != nil {
						failed.Add(1)
						mu.Lock()
						delete(waiting, i)
						mu.Unlock()
						free <- i
						return
					}
					conns[i] = c
					called(i)
				})
			}
		}
		tick.Stop()
		st.Failed = int(failed.Load())
		held := evalChurnStep(st, p, func() []time.Duration {
			// Give this step's last transitions up to MaxLag to arrive.
			deadline := time.Now().Add(p.MaxLag)
			for {
				mu.Lock()
				left := 0
				for _, w := range waiting {
					if w.step == s && !w.seen {
						left++
					}
				}
				got := slices.Clone(lags[s])
				mu.Unlock()
				if left == 0 || time.Now().After(deadline) {
					return got
				}
				time.Sleep(20 * time.Millisecond) // polling what is in flight
			}
		})
		res.Steps = append(res.Steps, *st)
		if !held {
			break
		}
		res.TransitionsPerSec = max(res.TransitionsPerSec, st.PerSec)
	}
	return res, nil
}

// evalChurnStep fills in what a step achieved and says whether it held.
func evalChurnStep(st *ChurnStep, p ChurnParams, lags func() []time.Duration) bool {
	got := lags()
	st.Resolved = len(got)
	st.PerSec = float64(st.Resolved) / p.Step.Seconds()
	if len(got) > 0 {
		slices.Sort(got)
		q := func(f float64) float64 {
			return float64(got[min(len(got)-1, int(f*float64(len(got))))].Microseconds()) / 1000
		}
		st.P50ms, st.P99ms = q(0.5), q(0.99)
	}
	want := st.Rate * p.Step.Seconds()
	st.Held = float64(st.Started) >= 0.9*want && float64(st.Resolved) >= 0.99*float64(st.Started) &&
		st.P99ms < float64(p.MaxLag.Microseconds())/1000
	return st.Held
}
