package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/presencehq/presence/bench/load"
)

// fanoutParams sizes the fanout scenario: Watchers sockets in Procs load
// processes watch Channels channels, each holding the target user.
type fanoutParams struct {
	Watchers, Procs, Channels, Rounds int
}

const fanoutTarget = "fanout-target"

// fanout: one user goes online and offline in turn (Rounds changes); every
// watcher watches a channel holding it. Measured per change: from the
// user's connect (or close) call to the last watcher reading it. On the
// peer the user's connect is its connect and one frame of subscribes to
// all the channels. The server's CPU profile over the rounds is saved as
// fanout-<system>.pprof.
func fanout(ctx context.Context, e env, srv *server) ([]Result, error) {
	p := e.p.fanout
	var loads []*loadProc
	defer func() {
		for _, l := range loads {
			l.stop()
		}
	}()
	var channels []string
	began := time.Now()
	for k := range p.Procs {
		fp := load.FanoutParams{Target: fanoutTarget, Watchers: p.Watchers / p.Procs, Channels: p.Channels / p.Procs, Prefix: fmt.Sprintf("fan%d", k)}
		channels = append(channels, load.FanoutChannelIDs(fp)...)
		args := append(srv.loadArgs("fanout", fp.Prefix, sources(block(40, srv), k, 2)),
			"-n", fmt.Sprint(fp.Watchers), "-channels", fmt.Sprint(fp.Channels), "-target", fanoutTarget)
		l, err := startLoad(ctx, e.bin, args...)
		if err != nil {
			return nil, err
		}
		loads = append(loads, l)
	}
	watchers := 0
	for _, l := range loads {
		var c load.Connected
		if err := l.result(&c); err != nil {
			return nil, err
		}
		watchers += c.Conns
	}
	logf(srv, "fanout", "%d watchers of %d channels holding %s in place in %s; %d changes", watchers, len(channels), fanoutTarget, time.Since(began).Round(time.Millisecond), p.Rounds)

	sys := srv.client(sources(block(40, srv), 99, 1))
	saved := srv.cpuProfile(5*time.Second, filepath.Join(e.dir, "fanout-"+srv.system+".pprof"))
	defer func() {
		if err := saved(); err != nil {
			logf(srv, "fanout", "CPU profile: %v", err)
		}
	}()
	var target load.Socket
	defer func() {
		if target != nil {
			target.Close()
		}
	}()
	var lasts []float64
	missed := 0
	for r := range p.Rounds {
		online := r%2 == 0
		word := map[bool]string{true: "online", false: "offline"}[online]
		for _, l := range loads {
			if err := l.tell(word); err != nil {
				return nil, err
			}
		}
		for _, l := range loads {
			var armed struct{ Armed bool }
			if err := l.result(&armed); err != nil {
				return nil, err
			}
		}
		start := time.Now()
		if online {
			c, err := sys.Member(ctx, 0, fanoutTarget, channels)
			if err != nil {
				return nil, err
			}
			target = c
		} else {
			target.Close()
			target = nil
		}
		var last int64
		got, of := 0, 0
		for _, l := range loads {
			var fr load.FanoutRound
			if err := l.result(&fr); err != nil {
				return nil, err
			}
			got += fr.Received
			of += fr.Of
			last = max(last, fr.LastUnixNano)
		}
		missed += of - got
		end := time.Unix(0, last)
		if last == 0 {
			end = time.Now() // nobody saw it: as long as the wait
		}
		ms := float64(end.Sub(start).Microseconds()) / 1000
		lasts = append(lasts, ms)
		logf(srv, "fanout", "%s: %d of %d watchers in %.1f ms", word, got, of, ms)
	}
	slices.Sort(lasts)
	return []Result{
		{Metric: "last_delivery_ms", Value: lasts[len(lasts)/2], Unit: "ms"},
		{Metric: "last_delivery_max_ms", Value: lasts[len(lasts)-1], Unit: "ms"},
		{Metric: "watchers", Value: float64(watchers), Unit: "connections"},
		{Metric: "missed", Value: float64(missed), Unit: "deliveries"},
	}, nil
}
