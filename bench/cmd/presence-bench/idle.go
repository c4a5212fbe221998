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

// idle connects clients that only connect (no channel, on either system)
// and measures the server's RSS and goroutines per connection; it saves
// the server's heap profile with them connected (idle-heap-<system>.pprof).
func idle(ctx context.Context, e env, srv *server) ([]Result, error) {
	n := e.p.idleConns
	base, err := settledRSS(srv.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	g0, err := srv.goroutines()
	if err != nil {
		return nil, err
	}
	const perProc = 8000
	procs := (n + perProc - 1) / perProc
	logf(srv, "idle", "%d clients in %d load processes (server RSS before: %.1f MiB)", n, procs, float64(base)/(1<<20))
	var loads []*loadProc
	defer func() {
		for _, l := range loads {
			l.stop()
		}
	}()
	began := time.Now()
	total := load.Connected{}
	for i := range procs {
		share := min(perProc, n-i*perProc)
		// Two source addresses per process.
		args := append(srv.loadArgs("idle", fmt.Sprintf("idle%d", i), sources(block(10, srv), i, 2)), "-n", strconv.Itoa(share))
		l, err := startLoad(ctx, e.bin, args...)
		if err != nil {
			return nil, err
		}
		loads = append(loads, l)
	}
	for _, l := range loads {
		var c load.Connected
		if err := l.result(&c); err != nil {
			return nil, err
		}
		total.Conns += c.Conns
		total.Failed += c.Failed
		total.Retries += c.Retries
	}
	total.Took = time.Since(began)
	if total.Conns == 0 {
		return nil, fmt.Errorf("no client connected (%d failed)", total.Failed)
	}
	rss, err := settledRSS(srv.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	per := float64(rss-base) / float64(total.Conns)
	g1, err := srv.goroutines()
	if err != nil {
		return nil, err
	}
	gPer := float64(g1-g0) / float64(total.Conns)
	if err := srv.saveProfile("heap", filepath.Join(e.dir, "idle-heap-"+srv.system+".pprof")); err != nil {
		return nil, err
	}
	logf(srv, "idle", "%d connected (%d failed, %d retried) in %s; server RSS %.1f MiB, %.1f KB and %.2f goroutines per connection",
		total.Conns, total.Failed, total.Retries, total.Took.Round(time.Millisecond), float64(rss)/(1<<20), per/1000, gPer)
	return []Result{
		{Metric: "conns", Value: float64(total.Conns), Unit: "connections"},
		{Metric: "rss_per_conn_bytes", Value: per, Unit: "bytes"},
		{Metric: "goroutines_per_conn", Value: gPer, Unit: "goroutines"},
		{Metric: "connect_per_sec", Value: total.PerSecond(), Unit: "connects/s"},
	}, nil
}
