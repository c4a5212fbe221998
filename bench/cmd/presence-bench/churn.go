package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/presencehq/presence/bench/load"
)

// churn: users connect and disconnect in a loop at rising rates while one
// watcher per channel reads their changes (load.Churn, in one load process,
// so the lag is on one clock). Measured: the highest rate of transitions
// seen per second over a step whose lag stayed bounded. The server's CPU
// profile over the steps is saved as churn-<system>.pprof.
func churn(ctx context.Context, e env, srv *server) ([]Result, error) {
	p := e.p.churn
	rates := make([]string, len(p.Rates))
	for i, r := range p.Rates {
		rates[i] = fmt.Sprint(r)
	}
	// Each connect takes a new ephemeral port and each close leaves one in
	// TIME_WAIT: many source addresses.
	args := append(srv.loadArgs("churn", "churn", sources(block(30, srv), 0, 200)),
		"-users", fmt.Sprint(p.Users), "-channels", fmt.Sprint(p.Channels), "-rates", strings.Join(rates, ","),
		"-step", p.Step.String(), "-max-lag", p.MaxLag.String())
	l, err := startLoad(ctx, e.bin, args...)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	var started struct{ Started bool }
	if err := l.result(&started); err != nil {
		return nil, err
	}
	logf(srv, "churn", "%d users in %d channels, rates %s/s, %s each", p.Users, p.Channels, strings.Join(rates, ", "), p.Step)
	saved := srv.cpuProfile(min(time.Duration(len(p.Rates))*p.Step, 30*time.Second), filepath.Join(e.dir, "churn-"+srv.system+".pprof"))
	var res load.ChurnResult
	err = l.result(&res)
	if perr := saved(); perr != nil {
		logf(srv, "churn", "CPU profile: %v", perr)
	}
	if err != nil {
		return nil, err
	}
	for _, st := range res.Steps {
		logf(srv, "churn", "%6.0f/s: %d started, %d seen (%.0f/s), %d failed, %d short; lag p50 %.2f ms, p99 %.2f ms; held %v",
			st.Rate, st.Started, st.Resolved, st.PerSec, st.Failed, st.Short, st.P50ms, st.P99ms, st.Held)
	}
	out := []Result{{Metric: "transitions_per_sec", Value: res.TransitionsPerSec, Unit: "transitions/s"}}
	for _, st := range res.Steps {
		if st.Held && st.PerSec == res.TransitionsPerSec {
			out = append(out, Result{Metric: "lag_p99_ms", Value: st.P99ms, Unit: "ms"})
		}
	}
	return out, nil
}
