package chaos

import (
	"context"
	"fmt"
	"time"
)

// KillGatewayParams sizes the kill -9 gateway scenario. A zero duration is
// the services' default.
type KillGatewayParams struct {
	UsersPerGateway int
	Runs            int
	LeaseTTL        time.Duration // gateways
	LeaseInterval   time.Duration // gateways
	LeaseCheck      time.Duration // workers
}

// KillGateway: users are connected to both gateways, a watcher on
// gateway-2 watches their channel. Each run kills gateway-1 with SIGKILL:
// its users must read offline within the lease TTL (I4), the watcher must
// get exactly one offline per user of gateway-1 and nothing for
// gateway-2's, whose users stay online through every run. Between runs
// gateway-1 restarts under its name (I6) and its users connect again.
func KillGateway(s Size) Scenario {
	p := KillGatewayParams{UsersPerGateway: 10, Runs: 2, LeaseTTL: 3 * time.Second}
	if s == Full {
		// The production lease.
		p = KillGatewayParams{UsersPerGateway: 250, Runs: 10}
	}
	return KillGatewayWith(p)
}

// KillGatewayWith is KillGateway with explicit parameters.
func KillGatewayWith(p KillGatewayParams) Scenario {
	env := map[string]string{}
	ttl := setting(env, "PRESENCE_LEASE_TTL", p.LeaseTTL, gatewayDefaults.LeaseTTL)
	interval := setting(env, "PRESENCE_LEASE_INTERVAL", p.LeaseInterval, min(gatewayDefaults.LeaseInterval, ttl/10))
	check := setting(env, "PRESENCE_LEASE_CHECK", p.LeaseCheck, workerDefaults.LeaseCheck)
	sc := Scenario{
		Name:    "kill-gateway",
		Title:   "kill -9 gateway",
		Env:     env,
		Timeout: time.Duration(p.Runs)*(3*ttl+30*time.Second) + time.Minute,
	}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		n := p.UsersPerGateway
		// I4: offline within the lease TTL, the event on its way to the
		// watcher included.
		bound := ttl
		r.Setup = fmt.Sprintf("%d users on each gateway, %d runs, lease %s (renewed every %s, checked every %s)", n, p.Runs, dur(ttl), dur(interval), dur(check))
		r.Expected = fmt.Sprintf("≤ lease TTL = %s (I4); gateway-2's users untouched", Dur(bound))
		pop, err := e.Populate(ctx, "kg", 2*n, "kg-watcher")
		if err != nil {
			return err
		}
		onG1, onG2 := pop.Users[:n], pop.Users[n:]
		ws, err := e.Watchers(ctx, pop, "gateway-2")
		if err != nil {
			return err
		}
		w := ws[0]
		defer w.Close()
		g2, err := e.DialAll(ctx, onG2, func(int, string) string { return e.C.ConnectURL("gateway-2") })
		if err != nil {
			return err
		}
		defer CloseAll(g2)

		var took, restTook []time.Duration
		for run := range p.Runs {
			if run > 0 {
				if err := Within(ctx, time.Minute, func(ctx context.Context) error { return e.C.Restart(ctx, "gateway-1") }); err != nil {
					return fmt.Errorf("restart gateway-1: %w", err)
				}
			}
			g1, err := e.DialAll(ctx, onG1, func(int, string) string { return e.C.ConnectURL("gateway-1") })
			if err != nil {
				return err
			}
			// Everyone online, for the watcher and for REST.
			err = Within(ctx, 20*time.Second, func(ctx context.Context) error {
				return w.Wait(ctx, func() bool {
					for _, u := range onG1 {
						if w.Len(u) < 2*run+1 {
							return false
						}
					}
					for _, u := range onG2 {
						if w.Len(u) < 1 {
							return false
						}
					}
					return true
				})
			})
			if err != nil {
				DropAll(g1)
				return fmt.Errorf("run %d: users not online for the watcher: %w", run+1, err)
			}
			want := map[string]bool{}
			for _, u := range pop.Users {
				want[u] = true
			}
			if err := Within(ctx, 20*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", want) }); err != nil {
				DropAll(g1)
				return fmt.Errorf("run %d: %w", run+1, err)
			}

			e.Logf("run %d: kill -9 gateway-1 (pid %d)", run+1, e.C.Pid("gateway-1"))
			killed := time.Now()
			if err := e.C.Kill("gateway-1"); err != nil {
				return err
			}
			err = Within(ctx, 3*ttl+10*time.Second, func(ctx context.Context) error {
				return w.Wait(ctx, func() bool {
					for _, u := range onG1 {
						if w.Len(u) < 2*run+2 {
							return false
						}
					}
					return true
				})
			})
			DropAll(g1) // the other end died with the gateway
			if err != nil {
				var missing []string
				for _, u := range onG1 {
					if w.Len(u) < 2*run+2 {
						missing = append(missing, u)
					}
				}
				r.Violate("run %d: %d users of the killed gateway-1 never went offline for the watcher within %s: %s", run+1, len(missing), 3*ttl+10*time.Second, summarize(missing))
				break
			}
			var last time.Duration
			for _, u := range onG1 {
				last = max(last, w.Seq(u)[2*run+1].At.Sub(killed))
			}
			took = append(took, last)
			if last > bound {
				r.Violate("run %d: gateway-1's users offline %s after kill -9, later than the lease TTL %s (I4)", run+1, Dur(last), Dur(bound))
			}
			// REST agrees, and never shows gateway-2's users offline.
			for _, u := range onG1 {
				want[u] = false
			}
			err = Within(ctx, 10*time.Second, func(ctx context.Context) error {
				return Poll(ctx, 50*time.Millisecond, func() (bool, error) {
					bad, err := e.RESTDiff(ctx, "api-2", want)
					if err != nil {
						return false, err
					}
					for _, u := range onG2 {
						if got, ok := bad[u]; ok {
							r.Violate("run %d: %s on the live gateway-2 reads %s through REST", run+1, u, got)
							return true, nil
						}
					}
					return len(bad) == 0, nil
				})
			})
			if err != nil {
				r.Violate("run %d: REST did not follow the watcher: %v", run+1, err)
			}
			restTook = append(restTook, time.Since(killed))
			e.Logf("run %d: gateway-1's %d users offline %s after the kill (REST %s)", run+1, n, Dur(last), Dur(time.Since(killed)))
		}

		// Observation window: a lease period after the last kill's sweep,
		// in which gateway-2's lease keeps being renewed and none of its
		// users may go offline.
		window := ttl + check
		e.Logf("observing for %s that nothing more happens", window)
		time.Sleep(window)
		for _, u := range onG1 {
			if err := CheckSeq(w, u, Alternating(true, 2*len(took))); err != nil {
				r.Violate("%v", err)
			}
		}
		for _, u := range onG2 {
			if err := CheckSeq(w, u, []bool{true}); err != nil {
				r.Violate("%v", err)
			}
		}
		want := map[string]bool{}
		for _, u := range onG1 {
			want[u] = false
		}
		for _, u := range onG2 {
			want[u] = true
		}
		if bad, err := e.RESTDiff(ctx, "api-1", want); err != nil {
			return err
		} else if len(bad) > 0 {
			r.Violate("after the runs REST disagrees: %s", describe(bad, want))
		}
		if !e.C.Running("gateway-2") {
			r.Violate("gateway-2 is not running")
		}
		r.Measured = fmt.Sprintf("all of gateway-1's users offline for the watcher %s over %d runs (REST: %s)", P50Max(took), len(took), P50Max(restTook))
		return nil
	})
}
