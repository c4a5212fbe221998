package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/presencehq/presence/bench/load"
)

// stormParams sizes the storm: Clients in Procs load processes, members of
// Channels channels with one watcher each.
type stormParams struct {
	Clients, Procs, Channels int
}

// view is what the watchers make of the members' presence. On the peer a
// user is online while any of its connections is joined (a leave of the
// dropped connection may come after the join of the new one).
type view struct {
	mu      sync.Mutex
	offline map[string]bool
	clients map[string]map[string]bool
	last    time.Time // the last change read
	changes int
}

func (v *view) on(c load.Change) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.last, v.changes = c.At, v.changes+1
	online := c.Online
	if c.Client != "" {
		set := v.clients[c.User]
		if set == nil {
			set = map[string]bool{}
			v.clients[c.User] = set
		}
		if c.Online {
			set[c.Client] = true
		} else {
			delete(set, c.Client)
		}
		online = len(set) > 0
	}
	if online {
		delete(v.offline, c.User)
	} else {
		v.offline[c.User] = true
	}
}

// storm: every client drops at once (its socket ends without a close, as
// in a network failure) and reconnects with its SDK's jittered backoff
// (Stream's for Presence, centrifuge-js's for the peer). The truth after
// it: everyone online. Measured: from the drop until every watcher's view
// and the server's own state — Presence's through queryUsers, the peer's
// presence manager through the presence command — equal the truth, with
// no change read in the last second.
func storm(ctx context.Context, e env, srv *server) ([]Result, error) {
	p := e.p.storm
	var loads []*loadProc
	defer func() {
		for _, l := range loads {
			l.stop()
		}
	}()
	type group struct{ prefix, channel, watcher string }
	var groups []group
	var users []string
	began := time.Now()
	for k := range p.Procs {
		prefix, n, chs := fmt.Sprintf("storm%d", k), p.Clients/p.Procs, p.Channels/p.Procs
		for j := range chs {
			groups = append(groups, group{prefix, load.ChannelName(prefix, j), load.WatcherName(prefix, j)})
		}
		for i := range n {
			users = append(users, load.UserName(prefix, i))
		}
		args := append(srv.loadArgs("storm", prefix, sources(block(50, srv), k, 2)), "-n", fmt.Sprint(n), "-channels", fmt.Sprint(chs))
		l, err := startLoad(ctx, e.bin, args...)
		if err != nil {
			return nil, err
		}
		loads = append(loads, l)
	}
	connected := 0
	for _, l := range loads {
		var c load.Connected
		if err := l.result(&c); err != nil {
			return nil, err
		}
		connected += c.Conns
	}
	v := &view{offline: map[string]bool{}, clients: map[string]map[string]bool{}}
	sys := srv.client(sources(block(50, srv), 99, 1))
	pool := load.NewPool(25 * time.Second)
	defer pool.Close()
	watchers := map[string]load.Socket{}
	for i, g := range groups {
		w, err := sys.Watch(ctx, i, g.watcher, []string{g.channel}, v.on)
		if err != nil {
			return nil, fmt.Errorf("watcher of %s: %w", g.channel, err)
		}
		pool.Add(w)
		watchers[g.channel] = w
	}
	logf(srv, "storm", "%d clients connected (of %d), %d watchers, in %s; dropping them all", connected, len(users), len(groups), time.Since(began).Round(time.Millisecond))

	// stateAgrees asks the server whether everyone is online.
	stateAgrees := func() (bool, error) {
		if ps, ok := sys.(*load.Presence); ok {
			online, err := ps.REST.Online(ctx, users)
			if err != nil {
				return false, err
			}
			for _, u := range users {
				if !online[u] {
					return false, nil
				}
			}
			return true, nil
		}
		present := map[string]bool{}
		for ch, w := range watchers {
			got, err := w.(*load.CentrifugeConn).Presence(ctx, ch)
			if err != nil {
				return false, err
			}
			for u := range got {
				present[u] = true
			}
		}
		for _, u := range users {
			if !present[u] {
				return false, nil
			}
		}
		return true, nil
	}

	dropped := time.Now()
	saved := srv.cpuProfile(10*time.Second, filepath.Join(e.dir, "storm-"+srv.system+".pprof"))
	defer func() {
		if err := saved(); err != nil {
			logf(srv, "storm", "CPU profile: %v", err)
		}
	}()
	reconnected := make(chan load.Connected, 1)
	for _, l := range loads {
		if err := l.tell("drop"); err != nil {
			return nil, err
		}
	}
	go func() {
		total := load.Connected{}
		for _, l := range loads {
			var c load.Connected
			if l.result(&c) != nil {
				break
			}
			total.Conns += c.Conns
			total.Failed += c.Failed
			total.Retries += c.Retries
		}
		total.Took = time.Since(dropped)
		reconnected <- total
	}()
	var (
		back    *load.Connected
		stateAt time.Time // start of the first check of the current agreeing streak
	)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			v.mu.Lock()
			off := len(v.offline)
			v.mu.Unlock()
			return nil, fmt.Errorf("not converged 3 min after the drop: %d users offline for the watchers, reconnected %+v", off, back)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case c := <-reconnected:
			back = &c
			logf(srv, "storm", "%d reconnected (%d failed, %d retries) %s after the drop", c.Conns, c.Failed, c.Retries, c.Took.Round(time.Millisecond))
		case <-time.After(250 * time.Millisecond):
		}
		if back == nil {
			continue
		}
		checked := time.Now()
		ok, err := stateAgrees()
		if err != nil {
			return nil, err
		}
		if !ok {
			stateAt = time.Time{}
			continue
		}
		if stateAt.IsZero() {
			stateAt = checked
		}
		v.mu.Lock()
		agree, last, changes := len(v.offline) == 0, v.last, v.changes
		v.mu.Unlock()
		if !agree || time.Since(last) < time.Second {
			continue
		}
		reconnectedAt := dropped.Add(back.Took)
		converged := latest(reconnectedAt, last, stateAt).Sub(dropped)
		logf(srv, "storm", "converged %s after the drop (reconnects done %s, last change read %s, server state agreed %s; %d changes read)",
			converged.Round(time.Millisecond), back.Took.Round(time.Millisecond), last.Sub(dropped).Round(time.Millisecond), stateAt.Sub(dropped).Round(time.Millisecond), changes)
		return []Result{
			{Metric: "converge_s", Value: converged.Seconds(), Unit: "s"},
			// What the server adds to the clients' own backoff.
			{Metric: "settle_after_reconnects_ms", Value: float64((converged - back.Took).Microseconds()) / 1000, Unit: "ms"},
			{Metric: "clients", Value: float64(connected), Unit: "connections"},
			{Metric: "reconnect_retries", Value: float64(back.Retries), Unit: "attempts"},
		}, nil
	}
}

func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
