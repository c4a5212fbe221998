package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
// member's connect (or close) call to the watcher reading the event: one
// clock, one machine.
func latency(ctx context.Context, bin string, p latencyParams) ([]Result, error) {
	srv, err := startServer(ctx, bin)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	rest := load.REST{Base: srv.httpURL, Key: benchKey, Secret: benchSecret}
	members := make([]string, p.Members)
	for i := range members {
		members[i] = fmt.Sprintf("lat-m-%05d", i)
	}
	const watcher, cid = "lat-watcher", "bench-latency"
	if err := rest.UpsertUsers(ctx, append([]string{watcher}, members...)); err != nil {
		return nil, err
	}
	if err := rest.CreateChannel(ctx, "messaging", cid, watcher, append([]string{watcher}, members...)); err != nil {
		return nil, err
	}

	type pending struct {
		online bool
		start  time.Time
	}
	var mu sync.Mutex
	waiting := map[string]pending{}
	var samples []time.Duration
	wd := load.NewDialer(load.Target{URL: srv.wsURL, Key: benchKey, Secret: benchSecret}, "")
	wd.OnFrame = func(_ *load.Conn, b []byte, at time.Time) {
		var ev struct {
			Type string `json:"type"`
			User struct {
				ID     string `json:"id"`
				Online bool   `json:"online"`
			} `json:"user"`
		}
		if json.Unmarshal(b, &ev) != nil || ev.Type != "user.presence.changed" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if w, ok := waiting[ev.User.ID]; ok && w.online == ev.User.Online {
			samples = append(samples, at.Sub(w.start))
			delete(waiting, ev.User.ID)
		}
	}
	wc, err := wd.Dial(ctx, watcher)
	if err != nil {
		return nil, err
	}
	defer wc.Close()
	if err := rest.Watch(ctx, watcher, wc.ID, "messaging", cid); err != nil {
		return nil, err
	}

	md := load.NewDialer(load.Target{URL: srv.wsURL, Key: benchKey, Secret: benchSecret}, "")
	conns := make([]*load.Conn, len(members))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	fmt.Fprintf(os.Stderr, "presence-bench: latency: %d members, %.0f transitions/s for %s\n", p.Members, p.Rate, p.For)
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.Rate))
	defer tick.Stop()
	end := time.Now().Add(p.For)
	var wg sync.WaitGroup
	var failed int
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
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
			c, err := md.Dial(ctx, user)
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
		return nil, fmt.Errorf("the watcher received no transition")
	}
	slices.Sort(samples)
	q := func(f float64) float64 {
		return float64(samples[min(len(samples)-1, int(f*float64(len(samples))))].Microseconds()) / 1000
	}
	fmt.Fprintf(os.Stderr, "presence-bench: latency: %d transitions measured (%d never reached the watcher, %d connects failed): p50 %.2f ms, p99 %.2f ms, p999 %.2f ms\n",
		len(samples), len(waiting), failed, q(0.5), q(0.99), q(0.999))
	return []Result{
		{Scenario: "latency", System: "presence", Metric: "p50_ms", Value: q(0.5), Unit: "ms"},
		{Scenario: "latency", System: "presence", Metric: "p99_ms", Value: q(0.99), Unit: "ms"},
		{Scenario: "latency", System: "presence", Metric: "p999_ms", Value: q(0.999), Unit: "ms"},
		{Scenario: "latency", System: "presence", Metric: "transitions", Value: float64(len(samples)), Unit: "transitions"},
		{Scenario: "latency", System: "presence", Metric: "lost", Value: float64(len(waiting)), Unit: "transitions"},
	}, nil
}
