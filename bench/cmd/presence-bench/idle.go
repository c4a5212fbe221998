package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/presencehq/presence/bench/load"
)

// block is the source-address block of a scenario (10, 20, …) on a system.
func block(base int, srv *server) int {
	if srv.system == centrifuge {
		return base + 1
	}
	return base
}

// idleStep is how many connections apart idle samples the server's RSS
// (the idle-rss.png plot).
const idleStep = 2500

// idle connects clients that only connect (no channel, on either system)
// and measures the server's RSS and goroutines per connection; it saves
// the server's heap profile with them connected (idle-heap-<system>.pprof).
// The clients connect in steps of about idleStep, the load processes
// waiting while the server's RSS settles and is sampled after each.
func idle(ctx context.Context, e env, srv *server) ([]Result, []Series, error) {
	n := e.p.idleConns
	pid := srv.cmd.Process.Pid
	base, err := settledRSS(pid)
	if err != nil {
		return nil, nil, err
	}
	g0, err := srv.goroutines()
	if err != nil {
		return nil, nil, err
	}
	const perProc = 8000
	procs := (n + perProc - 1) / perProc
	steps := max(1, min((n+idleStep-1)/idleStep, n/procs))
	logf(srv, "idle", "%d clients in %d load processes, %d steps (server RSS before: %.1f MiB)", n, procs, steps, float64(base)/(1<<20))
	var loads []*loadProc
	defer func() {
		for _, l := range loads {
			l.stop()
		}
	}()
	began := time.Now()
	for i := range procs {
		share := (i+1)*n/procs - i*n/procs
		// Two source addresses per process.
		args := append(srv.loadArgs("idle", fmt.Sprintf("idle%d", i), sources(block(10, srv), i, 2)),
			"-n", strconv.Itoa(share), "-steps", strconv.Itoa(steps))
		l, err := startLoad(ctx, e.bin, args...)
		if err != nil {
			return nil, nil, err
		}
		loads = append(loads, l)
	}
	total := load.Connected{}
	rss := base
	curve := Series{Name: rssByConns, X: []float64{0}, XUnit: "connections", Y: []float64{float64(base)}, YUnit: "bytes"}
	for k := range steps {
		if k > 0 {
			began = time.Now()
			for _, l := range loads {
				if err := l.tell("next"); err != nil {
					return nil, nil, err
				}
			}
		}
		total.Conns = 0
		for _, l := range loads {
			var c load.Connected
			if err := l.result(&c); err != nil {
				return nil, nil, err
			}
			total.Conns += c.Conns // so far
			total.Failed += c.Failed
			total.Retries += c.Retries
		}
		total.Took += time.Since(began) // connecting, not settling
		if rss, err = settledRSS(pid); err != nil {
			return nil, nil, err
		}
		curve.X, curve.Y = append(curve.X, float64(total.Conns)), append(curve.Y, float64(rss))
		logf(srv, "idle", "step %d of %d: %d connected, server RSS %.1f MiB", k+1, steps, total.Conns, float64(rss)/(1<<20))
	}
	if total.Conns == 0 {
		return nil, nil, fmt.Errorf("no client connected (%d failed)", total.Failed)
	}
	per := float64(rss-base) / float64(total.Conns)
	g1, err := srv.goroutines()
	if err != nil {
		return nil, nil, err
	}
	gPer := float64(g1-g0) / float64(total.Conns)
	if err := srv.saveProfile("heap", filepath.Join(e.dir, "idle-heap-"+srv.system+".pprof")); err != nil {
		return nil, nil, err
	}
	logf(srv, "idle", "%d connected (%d failed, %d retried) in %s; server RSS %.1f MiB, %.1f KB and %.2f goroutines per connection",
		total.Conns, total.Failed, total.Retries, total.Took.Round(time.Millisecond), float64(rss)/(1<<20), per/1000, gPer)
	return []Result{
		{Metric: "conns", Value: float64(total.Conns), Unit: "connections"},
		{Metric: "rss_per_conn_bytes", Value: per, Unit: "bytes"},
		{Metric: "goroutines_per_conn", Value: gPer, Unit: "goroutines"},
		{Metric: "connect_per_sec", Value: total.PerSecond(), Unit: "connects/s"},
	}, []Series{curve}, nil
}
