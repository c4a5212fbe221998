package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// SilentParams sizes the silent client scenario. A zero duration is the
// gateways' default.
type SilentParams struct {
	// Silent users have one socket, through the proxy; Dual users one
	// through the proxy and one straight to gateway-2; Control users one
	// straight to gateway-1.
	Silent, Dual, Control int
	PingInterval          time.Duration
	PingTimeout           time.Duration
}

// SilentClient: sockets go through a loopback TCP proxy that is then
// black-holed (nothing forwarded either way, nothing closed). The gateway's
// pings go unanswered: within ping interval + timeout it drops those
// sockets and their users go offline, exactly once for the watcher. A user
// with a second, healthy socket stays online without a flap, and users on
// healthy sockets of the same gateway are untouched.
func SilentClient(s Size) Scenario {
	p := SilentParams{Silent: 10, Dual: 5, Control: 5, PingInterval: 500 * time.Millisecond, PingTimeout: time.Second}
	if s == Full {
		// The production ping.
		p = SilentParams{Silent: 500, Dual: 250, Control: 250}
	}
	return SilentClientWith(p)
}

// SilentClientWith is SilentClient with explicit parameters.
func SilentClientWith(p SilentParams) Scenario {
	env := map[string]string{}
	p.PingInterval = setting(env, "PRESENCE_PING_INTERVAL", p.PingInterval, gatewayDefaults.PingInterval)
	p.PingTimeout = setting(env, "PRESENCE_PING_TIMEOUT", p.PingTimeout, gatewayDefaults.PingTimeout)
	sc := Scenario{
		Name:    "silent-client",
		Title:   "silent client",
		Env:     env,
		Timeout: 3*(p.PingInterval+p.PingTimeout) + 2*time.Minute,
	}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		// A ping goes out at most an interval after the black hole; the
		// socket is dropped when its timeout passes; then the close goes
		// through the worker to the watcher.
		bound := p.PingInterval + p.PingTimeout + time.Second
		r.Setup = fmt.Sprintf("%d silent users, %d with a second healthy socket, %d healthy; ping every %s, timeout %s", p.Silent, p.Dual, p.Control, dur(p.PingInterval), dur(p.PingTimeout))
		r.Expected = fmt.Sprintf("≤ interval + timeout + 1 s = %s; no flap for the others", Dur(bound))
		pop, err := e.Populate(ctx, "sc", p.Silent+p.Dual+p.Control, "sc-watcher")
		if err != nil {
			return err
		}
		silent := pop.Users[:p.Silent]
		dual := pop.Users[p.Silent : p.Silent+p.Dual]
		control := pop.Users[p.Silent+p.Dual:]
		ws, err := e.Watchers(ctx, pop, "gateway-2")
		if err != nil {
			return err
		}
		w := ws[0]
		defer w.Close()

		proxy, err := NewProxy(strings.TrimPrefix(e.C.URL("gateway-1"), "http://"))
		if err != nil {
			return err
		}
		defer proxy.Close()
		viaProxy := "ws://" + proxy.Addr() + "/connect"
		proxied, err := e.DialAll(ctx, append(append([]string{}, silent...), dual...), func(int, string) string { return viaProxy })
		if err != nil {
			return err
		}
		defer DropAll(proxied)
		direct, err := e.DialAll(ctx, append(append([]string{}, dual...), control...), func(i int, _ string) string {
			if i < len(dual) {
				return e.C.ConnectURL("gateway-2")
			}
			return e.C.ConnectURL("gateway-1")
		})
		if err != nil {
			return err
		}
		defer CloseAll(direct)

		// Everyone online for the watcher, and both sockets of each dual
		// user in its state.
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
		conns := func(n int) func() (bool, error) {
			return func() (bool, error) {
				for _, u := range dual {
					st, ok, err := e.Presence(ctx, u)
					if err != nil || !ok || len(st.Conns) != n {
						return false, err
					}
				}
				return true, nil
			}
		}
		if err := Within(ctx, 20*time.Second, func(ctx context.Context) error { return Poll(ctx, 50*time.Millisecond, conns(2)) }); err != nil {
			return fmt.Errorf("dual users' two sockets not in their state: %w", err)
		}

		e.Logf("black-holing %d sockets", len(proxied))
		holed := time.Now()
		proxy.BlackHole()
		err = Within(ctx, 3*(p.PingInterval+p.PingTimeout)+10*time.Second, func(ctx context.Context) error {
			return w.Wait(ctx, func() bool {
				for _, u := range silent {
					if w.Len(u) < 2 {
						return false
					}
				}
				return true
			})
		})
		var took []time.Duration
		for _, u := range silent {
			if seq := w.Seq(u); len(seq) >= 2 {
				took = append(took, seq[1].At.Sub(holed))
			}
		}
		if err != nil {
			r.Violate("%d of %d silent users never went offline for the watcher: %v", len(silent)-len(took), len(silent), err)
		}
		if len(took) > 0 {
			if worst := Quantile(took, 1); worst > bound {
				r.Violate("silent users offline up to %s after their traffic stopped, more than %s", Dur(worst), Dur(bound))
			}
		}
		// The dual users' silent sockets are gone from their state too: by
		// then any flap would have been emitted.
		if err := Within(ctx, 3*(p.PingInterval+p.PingTimeout)+10*time.Second, func(ctx context.Context) error {
			return Poll(ctx, 50*time.Millisecond, conns(1))
		}); err != nil {
			r.Violate("dual users' silent sockets were not dropped: %v", err)
		}
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		if err := Within(ctx, 30*time.Second, func(ctx context.Context) error { return e.Settle(ctx, m, ws) }); err != nil {
			return err
		}
		for _, u := range silent {
			if err := CheckSeq(w, u, []bool{true, false}); err != nil {
				r.Violate("%v", err)
			}
		}
		for _, u := range append(append([]string{}, dual...), control...) {
			if err := CheckSeq(w, u, []bool{true}); err != nil {
				r.Violate("%v", err)
			}
		}
		want := map[string]bool{}
		for _, u := range pop.Users {
			want[u] = true
		}
		for _, u := range silent {
			want[u] = false
		}
		if err := Within(ctx, 10*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", want) }); err != nil {
			r.Violate("%v", err)
		}
		r.Measured = fmt.Sprintf("silent users offline %s after their traffic stopped; %d flaps among the %d users with a healthy socket", P50Max(took), flaps(w, append(append([]string{}, dual...), control...)), len(dual)+len(control))
		return nil
	})
}

// flaps counts users of whom w received an offline.
func flaps(w *Watcher, users []string) int {
	n := 0
	for _, u := range users {
		for _, s := range w.Seq(u) {
			if !s.Online {
				n++
				break
			}
		}
	}
	return n
}
