package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/presencehq/presence/bench/load"
)

// latencyParams sizes the latency scenario (and each phase of hostile).
type latencyParams struct {
	Members int
	Rate    float64 // transitions per second, all members together
	For     time.Duration
}

// latency: a watcher watches a channel of members; members connect and
// disconnect in turn at a steady rate. Measured, per transition, from the
// member's connect (or close) call to the watcher reading the change: one
// clock, one machine. On the peer a member's connect is its connect and
// its subscribe to the channel; the change is its join (or leave) push.
func latency(ctx context.Context, e env, srv *server) ([]Result, []Series, error) {
	p := e.p.latency
	sys := srv.client(sources(block(20, srv), 0, 4))
	members := memberNames("lat-m", p.Members)
	const watcher, cid = "lat-watcher", "bench-latency"
	if err := sys.Setup(ctx, map[string][]string{cid: append([]string{watcher}, members...)}); err != nil {
		return nil, nil, err
	}
	clock := newTransitions()
	wc, err := sys.Watch(ctx, 0, watcher, []string{cid}, clock.seen)
	if err != nil {
		return nil, nil, err
	}
	defer wc.Close()
	logf(srv, "latency", "%d members, %.0f transitions/s for %s", p.Members, p.Rate, p.For)
	m, err := clock.run(ctx, sys, cid, members, p)
	if err != nil {
		return nil, nil, err
	}
	logf(srv, "latency", "%s: p50 %.2f ms, p99 %.2f ms, p999 %.2f ms", m, m.quantile(0.5), m.quantile(0.99), m.quantile(0.999))
	return []Result{
		{Metric: "p50_ms", Value: m.quantile(0.5), Unit: "ms"},
		{Metric: "p99_ms", Value: m.quantile(0.99), Unit: "ms"},
		{Metric: "p999_ms", Value: m.quantile(0.999), Unit: "ms"},
		{Metric: "transitions", Value: float64(len(m.samples)), Unit: "transitions"},
		{Metric: "lost", Value: float64(m.lost), Unit: "transitions"},
	}, []Series{{Name: latencySamples, Y: m.inOrder(), YUnit: "ms"}}, nil
}

// memberNames are n user ids: prefix-00000, prefix-00001, …
func memberNames(prefix string, n int) []string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return members
}

// transitions times each member's transition from its connect (or close)
// call to the watcher reading the change: the latency scenario's method,
// which hostile uses too. seen is the watcher's callback.
type transitions struct {
	mu      sync.Mutex
	waiting map[string]pending
	samples []time.Duration
}

type pending struct {
	online bool
	start  time.Time
}

func newTransitions() *transitions { return &transitions{waiting: map[string]pending{}} }

// seen takes a change the watcher read: the end of a transition timed, or
// not one of ours.
func (t *transitions) seen(c load.Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.waiting[c.User]; ok && w.online == c.Online {
		t.samples = append(t.samples, c.At.Sub(w.start))
		delete(t.waiting, c.User)
	}
}

// measured is one run's transitions.
type measured struct {
	// samples are the latencies in the order measured.
	samples []time.Duration
	// lost never reached the watcher; failed are connects refused.
	lost, failed int
}

func (m measured) String() string {
	return fmt.Sprintf("%d transitions measured (%d never reached the watcher, %d connects failed)", len(m.samples), m.lost, m.failed)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile is the f-quantile of the samples, in ms.
func (m measured) quantile(f float64) float64 {
	s := slices.Sorted(slices.Values(m.samples))
	return ms(s[min(len(s)-1, int(f*float64(len(s))))])
}

// inOrder is the samples in ms, in the order measured (a plot's series).
func (m measured) inOrder() []float64 {
	raw := make([]float64, len(m.samples))
	for i, d := range m.samples {
		raw[i] = ms(d)
	}
	return raw
}

// run has members of channel cid connect and disconnect in turn at
// p.Rate for p.For, each member's next transition after its last, and
// waits a few seconds for the last changes. The watcher must be watching
// cid. It returns what it measured and starts the next run afresh; an
// error if no transition reached the watcher.
func (t *transitions) run(ctx context.Context, sys load.System, cid string, members []string, p latencyParams) (measured, error) {
	conns := make([]load.Socket, len(members))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.Rate))
	defer tick.Stop()
	end := time.Now().Add(p.For)
	var wg sync.WaitGroup
	var failed int
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return measured{}, ctx.Err()
		case <-tick.C:
		}
		m := i % len(members)
		if m == 0 && i > 0 {
			wg.Wait() // a member's previous transition is done before its next
		}
		wg.Go(func() {
			user := members[m]
			t.mu.Lock()
			online := conns[m] == nil
			t.waiting[user] = pending{online: online, start: time.Now()}
			t.mu.Unlock()
			if !online {
				conns[m].Close()
				conns[m] = nil
				return
			}
			c, err := sys.Member(ctx, m, user, []string{cid})
			if err != nil {
				t.mu.Lock()
				failed++
				delete(t.waiting, user)
				t.mu.Unlock()
				return
			}
			conns[m] = c
		})
	}
	wg.Wait()
	// The last events: wait for them, up to a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		t.mu.Lock()
		left := len(t.waiting)
		t.mu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling what is still in flight
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := measured{samples: t.samples, lost: len(t.waiting), failed: failed}
	t.samples, t.waiting = nil, map[string]pending{}
	if len(m.samples) == 0 {
		return m, fmt.Errorf("the watcher received no transition")
	}
	return m, nil
}
