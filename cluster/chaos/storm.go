package chaos

import (
	"context"
	"fmt"
	"os"
	"time"
)

// StormParams sizes the reconnect storm.
type StormParams struct {
	Clients int
	// Every LeaveEvery-th client does not come back.
	LeaveEvery int
	// ConnectRate and ConnectBurst are each gateway's connect limit, low
	// enough that the storm meets it.
	ConnectRate  int
	ConnectBurst int
	// SendQueue is each socket's event queue on the gateways (0: the
	// default, 256). A watcher of thousands of users gets a burst of twice
	// as many events in a storm; past its queue the gateway closes it as
	// too slow (1013), which the SDK answers by reconnecting.
	SendQueue int
	// Procs, when set, spreads the clients over that many child processes
	// of Exe (presence-chaos, serving StormClientsCommand): a process may
	// hold at most 20,000 open files here.
	Procs int
	Exe   string
}

// Storm: clients spread over both gateways lose their sockets at once (the
// network dropped them) and reconnect with the SDK's jittered backoff,
// through the balancer; the gateways' connect limit answers part of them
// with code 9 and they retry. One in LeaveEvery does not come back. The
// gateways stay up, every user ends in the right state through REST, and
// both watchers' last word on every user is the truth, with no transition
// received twice in a row. Measured: the time from the drop until REST and
// both watchers agree with the truth.
func Storm(s Size) Scenario {
	p := StormParams{Clients: 5000, LeaveEvery: 10, ConnectRate: 500, ConnectBurst: 500, SendQueue: 16384, Procs: 2}
	if s == Full {
		p = StormParams{Clients: 20000, LeaveEvery: 10, ConnectRate: 1000, ConnectBurst: 1000, SendQueue: 65536, Procs: 4}
	}
	// The children are this program again: presence-chaos and the cluster
	// tests serve StormClientsCommand.
	p.Exe, _ = os.Executable()
	return StormWith(p)
}

// StormWith is Storm with explicit parameters.
func StormWith(p StormParams) Scenario {
	sc := Scenario{
		Name:  "storm",
		Title: "reconnect storm",
		Env: map[string]string{
			"PRESENCE_CONNECT_RATE":  fmt.Sprint(p.ConnectRate),
			"PRESENCE_CONNECT_BURST": fmt.Sprint(p.ConnectBurst),
		},
		Timeout: 5*time.Minute + time.Duration(p.Clients)*20*time.Millisecond,
	}
	if p.SendQueue > 0 {
		sc.Env["PRESENCE_SEND_QUEUE"] = fmt.Sprint(p.SendQueue)
	}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		r.Setup = fmt.Sprintf("%d clients over 2 gateways drop at once and reconnect with the SDK's backoff, 1 in %d does not; connect limit %d/s (burst %d) per gateway", p.Clients, p.LeaveEvery, p.ConnectRate, p.ConnectBurst)
		if p.Procs > 0 {
			r.Setup += fmt.Sprintf("; clients in %d processes", p.Procs)
		}
		if p.SendQueue > 0 {
			r.Setup += fmt.Sprintf("; send queue %d", p.SendQueue)
		}
		r.Expected = "gateways up; REST and watchers = truth; no state twice in a row"
		pop, err := e.Populate(ctx, "st", p.Clients, "st-watcher-1", "st-watcher-2")
		if err != nil {
			return err
		}
		ws, err := e.Watchers(ctx, pop, "gateway-1", "gateway-2")
		if err != nil {
			return err
		}
		defer closeWatchers(ws)
		gateways := [2]string{e.C.ConnectURL("gateway-1"), e.C.ConnectURL("gateway-2")}
		began := time.Now()
		var clients fleet
		if p.Procs > 0 {
			f, err := startChildren(ctx, p.Exe, p.Procs, gateways, e.Creds, pop.Users)
			if err != nil {
				return err
			}
			clients = f
		} else {
			clients = startSessions(ctx, gateways, e.Creds, pop.Users, 0)
		}
		defer clients.leave()
		if err := clients.waitConnected(ctx); err != nil {
			return err
		}
		online := func(w *Watcher) bool {
			for _, u := range pop.Users {
				if o, _ := w.Last(u); !o {
					return false
				}
			}
			return true
		}
		if err := Within(ctx, 2*time.Minute, func(ctx context.Context) error { return WaitAll(ctx, ws, online) }); err != nil {
			return fmt.Errorf("clients not online for the watchers: %w", err)
		}
		e.Logf("%d clients connected and online for both watchers in %s", p.Clients, Dur(time.Since(began)))

		truth := map[string]bool{}
		var leavers []int
		for i, u := range pop.Users {
			truth[u] = i%p.LeaveEvery != p.LeaveEvery-1
			if !truth[u] {
				leavers = append(leavers, i)
			}
		}
		before, err := clients.stats()
		if err != nil {
			return err
		}
		limited0 := 0
		for _, st := range before {
			limited0 += st.RateLimited
		}
		e.Logf("dropping all %d sockets at once", p.Clients)
		dropped := time.Now()
		if err := clients.drop(leavers); err != nil {
			return err
		}
		agree := func(w *Watcher) bool {
			for u, want := range truth {
				if o, _ := w.Last(u); o != want {
					return false
				}
			}
			return true
		}
		var restAt, watchersAt time.Duration
		var dead *Watcher
		err = Within(ctx, 3*time.Minute, func(ctx context.Context) error {
			return Poll(ctx, 100*time.Millisecond, func() (bool, error) {
				for _, w := range ws {
					if !w.Alive() {
						dead = w
						return true, nil
					}
				}
				if watchersAt == 0 && agree(ws[0]) && agree(ws[1]) {
					watchersAt = time.Since(dropped)
				}
				if restAt == 0 {
					bad, err := e.RESTDiff(ctx, "api-1", truth)
					if err != nil {
						return false, err
					}
					if len(bad) == 0 {
						restAt = time.Since(dropped)
					}
				}
				if watchersAt > 0 && restAt > 0 {
					// Converged only if no watcher moved away from the truth
					// since.
					return agree(ws[0]) && agree(ws[1]), nil
				}
				return false, nil
			})
		})
		if dead != nil {
			return fmt.Errorf("watcher %s (on %s) lost its socket in the storm: %v", dead.Name, dead.Gateway, dead.conn.Err())
		}
		if err != nil {
			bad, _ := e.RESTDiff(ctx, "api-1", truth)
			r.Violate("not converged within 3 min: REST disagrees for %d users (%s); watchers agree: %v, %v", len(bad), describe(bad, truth), agree(ws[0]), agree(ws[1]))
		}
		converged := max(restAt, watchersAt)
		e.Logf("converged %s after the drop (REST %s, watchers %s)", Dur(converged), Dur(restAt), Dur(watchersAt))

		for _, g := range []string{"gateway-1", "gateway-2"} {
			if !e.C.Running(g) {
				r.Violate("%s is not running after the storm", g)
			}
		}
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		if err := Within(ctx, time.Minute, func(ctx context.Context) error { return e.Settle(ctx, m, ws) }); err != nil {
			return err
		}
		on := true
		for _, w := range ws {
			if !agree(w) {
				r.Violate("after settling, watcher %s disagrees with the truth", w.Name)
			}
			for _, u := range pop.Users {
				if err := CheckAlternating(w, u, &on); err != nil {
					r.Violate("%v", err)
				}
			}
		}
		if bad, err := e.RESTDiff(ctx, "api-2", truth); err != nil {
			return err
		} else if len(bad) > 0 {
			r.Violate("after settling, api-2 disagrees: %s", describe(bad, truth))
		}
		after, err := clients.stats()
		if err != nil {
			return err
		}
		limited, maxFail, reconnected := -limited0, 0, 0
		for i, st := range after {
			limited += st.RateLimited
			maxFail = max(maxFail, st.Failures)
			if st.Fatal != "" {
				r.Violate("%s: %s", pop.Users[i], st.Fatal)
			}
			if truth[pop.Users[i]] && st.Connects >= 2 {
				reconnected++
			}
		}
		r.Measured = fmt.Sprintf("%d clients: converged %s after the drop (REST %s, watchers %s); %d reconnected, %d connects answered code 9 and retried (at most %d failed attempts by one client)",
			p.Clients, Dur(converged), Dur(restAt), Dur(watchersAt), reconnected, limited, maxFail)
		return nil
	})
}
