package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// DrainParams sizes the graceful drain scenario. A zero duration is the
// services' default.
type DrainParams struct {
	// Movers reconnect (through the balancer, to gateway-2) when drained;
	// Leavers do not; Stayers are on gateway-2 all along.
	Movers, Leavers, Stayers int
	Window, Grace            time.Duration
	LeaseTTL, LeaseCheck     time.Duration
}

// Drain: gateway-1 gets SIGTERM. It closes its sockets spread over the
// drain window with 1012; the clients reconnect the way the SDK does (after
// its backoff, through the load balancer, which now only has gateway-2)
// within the grace, and the watcher sees no offline→online flap for them.
// Users who do not come back read offline exactly once, after the grace.
// Gateway-1's retired lease then lapses and its sweep takes no one else
// offline.
func Drain(s Size) Scenario {
	p := DrainParams{Movers: 20, Leavers: 5, Stayers: 5, Window: time.Second, Grace: 5 * time.Second, LeaseTTL: 3 * time.Second}
	if s == Full {
		// The production drain and lease.
		p = DrainParams{Movers: 1000, Leavers: 100, Stayers: 100}
	}
	return DrainWith(p)
}

// DrainWith is Drain with explicit parameters.
func DrainWith(p DrainParams) Scenario {
	env := map[string]string{}
	p.Window = setting(env, "PRESENCE_DRAIN_WINDOW", p.Window, gatewayDefaults.DrainWindow)
	p.Grace = setting(env, "PRESENCE_DRAIN_GRACE", p.Grace, gatewayDefaults.DrainGrace)
	p.LeaseTTL = setting(env, "PRESENCE_LEASE_TTL", p.LeaseTTL, gatewayDefaults.LeaseTTL)
	p.LeaseCheck = setting(env, "PRESENCE_LEASE_CHECK", p.LeaseCheck, workerDefaults.LeaseCheck)
	sc := Scenario{
		Name:    "drain",
		Title:   "graceful drain (SIGTERM gateway)",
		Env:     env,
		Timeout: 2*(p.Window+p.Grace+p.LeaseTTL) + 2*time.Minute,
	}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		r.Setup = fmt.Sprintf("%d users drained from gateway-1 who reconnect, %d who do not, %d on gateway-2; window %s, grace %s", p.Movers, p.Leavers, p.Stayers, dur(p.Window), dur(p.Grace))
		r.Expected = "0 flaps; every drained socket closed with 1012; leavers offline once, after the grace"
		pop, err := e.Populate(ctx, "dr", p.Movers+p.Leavers+p.Stayers, "dr-watcher")
		if err != nil {
			return err
		}
		movers := pop.Users[:p.Movers]
		leavers := pop.Users[p.Movers : p.Movers+p.Leavers]
		stayers := pop.Users[p.Movers+p.Leavers:]
		ws, err := e.Watchers(ctx, pop, "gateway-2")
		if err != nil {
			return err
		}
		w := ws[0]
		defer w.Close()

		// Movers and leavers connect through a balancer whose first pick is
		// gateway-1; each session gets its own, so its next pick is gateway-2.
		g1, g2 := e.C.ConnectURL("gateway-1"), e.C.ConnectURL("gateway-2")
		sessions := map[string]*Session{}
		for _, u := range append(append([]string{}, movers...), leavers...) {
			sessions[u] = StartSession(ctx, NewBalancer(g1, g2), e.Creds, u)
		}
		defer func() {
			var wg sync.WaitGroup
			for _, s := range sessions {
				wg.Go(s.Leave)
			}
			wg.Wait()
		}()
		for u, s := range sessions {
			if err := Within(ctx, 30*time.Second, s.WaitConnected); err != nil {
				return err
			}
			if _, id := s.Connected(); !strings.HasPrefix(id, "gateway-1~") {
				return fmt.Errorf("%s connected as %s, not to gateway-1", u, id)
			}
		}
		for _, u := range leavers {
			sessions[u].GiveUp()
		}
		direct, err := e.DialAll(ctx, stayers, func(int, string) string { return g2 })
		if err != nil {
			return err
		}
		defer CloseAll(direct)
		err = Within(ctx, 20*time.Second, func(ctx context.Context) error {
			return w.Wait(ctx, func() bool {
				for _, u := range pop.Users {
					if w.Len(u) < 1 {
						return false
					}
				}
				return true
			})
		})
		if err != nil {
			return fmt.Errorf("users not online for the watcher: %w", err)
		}

		e.Logf("SIGTERM gateway-1 (pid %d)", e.C.Pid("gateway-1"))
		stopped := make(chan error, 1)
		go func() { stopped <- e.C.Stop("gateway-1") }()
		// Every mover back, on gateway-2.
		err = Within(ctx, p.Window+p.Grace+30*time.Second, func(ctx context.Context) error {
			return Poll(ctx, 50*time.Millisecond, func() (bool, error) {
				for _, u := range movers {
					s := sessions[u]
					if _, id := s.Connected(); !strings.HasPrefix(id, "gateway-2~") {
						if st := s.Stats(); st.Fatal != nil {
							return false, st.Fatal
						}
						return false, nil
					}
				}
				return true, nil
			})
		})
		if err != nil {
			r.Violate("drained users did not all reconnect to gateway-2: %v", err)
		}
		if err := <-stopped; err != nil {
			r.Violate("gateway-1 did not stop cleanly: %v", err)
		}
		var gaps []time.Duration
		for _, u := range append(append([]string{}, movers...), leavers...) {
			st := sessions[u].Stats()
			if len(st.CloseCodes) == 0 || st.CloseCodes[0] != websocket.StatusServiceRestart {
				r.Violate("%s: drained socket closed with %v, want 1012", u, st.CloseCodes)
			}
			if st.Connects >= 2 {
				gap := st.LastUp.Sub(st.LastDown)
				gaps = append(gaps, gap)
				if gap > p.Grace {
					r.Violate("%s reconnected %s after its drain, beyond the grace %s", u, Dur(gap), dur(p.Grace))
				}
			}
		}
		// The leavers go offline once their grace is over, not before.
		err = Within(ctx, p.Grace+30*time.Second, func(ctx context.Context) error {
			return w.Wait(ctx, func() bool {
				for _, u := range leavers {
					if w.Len(u) < 2 {
						return false
					}
				}
				return true
			})
		})
		if err != nil {
			r.Violate("users who did not come back never went offline: %v", err)
		}
		for _, u := range leavers {
			seq := w.Seq(u)
			if len(seq) < 2 {
				continue
			}
			if early := sessions[u].Stats().LastDown.Add(p.Grace).Sub(seq[1].At); early > 250*time.Millisecond {
				r.Violate("%s read offline %s before its grace was over", u, Dur(early))
			}
		}
		// Gateway-1's retired lease (grace + TTL) lapses; the sweep that
		// follows must take none of the movers offline.
		err = Within(ctx, p.Grace+2*p.LeaseTTL+30*time.Second, func(ctx context.Context) error {
			return Poll(ctx, 100*time.Millisecond, func() (bool, error) {
				l, err := e.Lease(ctx, "gateway-1")
				return err == nil && l.Expired, err
			})
		})
		if err != nil {
			r.Violate("gateway-1's lease never lapsed after the drain: %v", err)
		}
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		if err := Within(ctx, time.Minute, func(ctx context.Context) error { return e.Settle(ctx, m, ws) }); err != nil {
			return err
		}
		for _, u := range append(append([]string{}, movers...), stayers...) {
			if err := CheckSeq(w, u, []bool{true}); err != nil {
				r.Violate("%v", err)
			}
		}
		for _, u := range leavers {
			if err := CheckSeq(w, u, []bool{true, false}); err != nil {
				r.Violate("%v", err)
			}
		}
		want := map[string]bool{}
		for _, u := range pop.Users {
			want[u] = true
		}
		for _, u := range leavers {
			want[u] = false
		}
		if err := Within(ctx, 10*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", want) }); err != nil {
			r.Violate("%v", err)
		}
		r.Measured = fmt.Sprintf("%d flaps among %d drained users who reconnected (reconnect %s after the 1012)", flaps(w, movers), len(movers), P50Max(gaps))
		return nil
	})
}
