package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/presencehq/presence/bench/load"
)

// latencyParams sizes the latency scenario.
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
	members := make([]string, p.Members)
	for i := range members {
		members[i] = fmt.Sprintf("lat-m-%05d", i)
	}
	const watcher, cid = "lat-watcher", "bench-latency"
	if err := sys.Setup(ctx, map[string][]string{cid: append([]string{watcher}, members...)}); err != nil {
		return nil, nil, err
	}

	type pending struct {
		online bool
		start  time.Time
	}
	var mu sync.Mutex
	waiting := map[string]pending{}
	var samples []time.Duration
	wc, err := sys.Watch(ctx, 0, watcher, []string{cid}, func(c load.Change) {
		mu.Lock()
		defer mu.Unlock()
		if w, ok := waiting[c.User]; ok && w.online == c.Online {
			samples = append(samples, c.At.Sub(w.start))
			delete(waiting, c.User)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	defer wc.Close()

	conns := make([]load.Socket, len(members))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	logf(srv, "latency", "%d members, %.0f transitions/s for %s", p.Members, p.Rate, p.For)
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.Rate))
	defer tick.Stop()
	end := time.Now().Add(p.For)
	var wg sync.WaitGroup
	var failed int
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-tick.C:
		}
		m := i % len(members)
		if m == 0 && i > 0 {
			wg.Wait() // a member's previous transition is done before its next
		}
		wg.Go(func() {
			user := members[m]
			mu.Lock()
			online := conns[m] == nil
			waiting[user] = pending{online: online, start: time.Now()}
			mu.Unlock()
			if !online {
				conns[m].Close()
				conns[m] = nil
				return
			}
			c, err := sys.Member(ctx, m, user, []string{cid})
			if err != nil {
				mu.Lock()
				failed++
				delete(waiting, user)
				mu.Unlock()
				return
			}
			conns[m] = c
		})
	}
	wg.Wait()
	// The last events: wait for them, up to a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		left := len(waiting)
		mu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling what is still in flight
	}
	mu.Lock()
	defer mu.Unlock()
	if len(samples) == 0 {
		return nil, nil, fmt.Errorf("the watcher received no transition")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	raw := make([]float64, len(samples))
	for i, d := range samples {
		raw[i] = ms(d)
	}
	slices.Sort(samples)
	q := func(f float64) float64 {
		return ms(samples[min(len(samples)-1, int(f*float64(len(samples))))])
	}
	logf(srv, "latency", "%d transitions measured (%d never reached the watcher, %d connects failed): p50 %.2f ms, p99 %.2f ms, p999 %.2f ms",
		len(samples), len(waiting), failed, q(0.5), q(0.99), q(0.999))
	return []Result{
		{Metric: "p50_ms", Value: q(0.5), Unit: "ms"},
		{Metric: "p99_ms", Value: q(0.99), Unit: "ms"},
		{Metric: "p999_ms", Value: q(0.999), Unit: "ms"},
		{Metric: "transitions", Value: float64(len(samples)), Unit: "transitions"},
		{Metric: "lost", Value: float64(len(waiting)), Unit: "transitions"},
	}, []Series{{Name: latencySamples, Y: raw, YUnit: "ms"}}, nil
}
