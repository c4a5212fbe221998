package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// CPUHogParams sizes the CPU hog scenario. A zero lease TTL is the
// gateways' default.
type CPUHogParams struct {
	// Stable users stay connected throughout; Churn users connect and
	// disconnect steadily, keeping the gateways busy.
	Stable, Churn int
	LeaseTTL      time.Duration
	// Hog is how long every core is kept busy.
	Hog time.Duration
}

// CPUHog: busy loops, two per core, starve the whole machine while users
// churn through the gateways. A live gateway must keep its lease (I4): no
// worker marks it expired, and no user who stays connected ever reads
// offline. Renewals run on their own goroutine and NATS connection; the
// gaps between them are measured from the lease records themselves.
func CPUHog(s Size) Scenario {
	p := CPUHogParams{Stable: 20, Churn: 10, LeaseTTL: 2 * time.Second, Hog: 10 * time.Second}
	if s == Full {
		p = CPUHogParams{Stable: 500, Churn: 200, Hog: 30 * time.Second} // the production lease
	}
	return CPUHogWith(p)
}

// CPUHogWith is CPUHog with explicit parameters.
func CPUHogWith(p CPUHogParams) Scenario {
	env := map[string]string{}
	ttl := setting(env, "PRESENCE_LEASE_TTL", p.LeaseTTL, gatewayDefaults.LeaseTTL)
	interval := min(gatewayDefaults.LeaseInterval, ttl/10)
	if p.LeaseTTL > 0 {
		env["PRESENCE_LEASE_INTERVAL"] = interval.String()
	}
	sc := Scenario{Name: "cpu-hog", Title: "CPU hog (live gateways)", Env: env, Timeout: p.Hog + 3*time.Minute}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		hogs := 2 * runtime.NumCPU()
		r.Setup = fmt.Sprintf("%d busy loops on %d cores for %s; %d users staying, %d churning; lease %s (renewed every %s, expired after %s of silence)",
			hogs, runtime.NumCPU(), dur(p.Hog), p.Stable, p.Churn, dur(ttl), dur(interval), dur(ttl*8/10))
		r.Expected = "no lease expired; no staying user ever offline"
		pop, err := e.Populate(ctx, "hog", p.Stable+p.Churn, "hog-watcher")
		if err != nil {
			return err
		}
		stable, churning := pop.Users[:p.Stable], pop.Users[p.Stable:]
		ws, err := e.Watchers(ctx, pop, "gateway-2")
		if err != nil {
			return err
		}
		w := ws[0]
		defer w.Close()
		conns, err := e.DialAll(ctx, stable, func(i int, _ string) string {
			return e.C.ConnectURL([]string{"gateway-1", "gateway-2"}[i%2])
		})
		if err != nil {
			return err
		}
		defer CloseAll(conns)
		if err := Within(ctx, 30*time.Second, func(ctx context.Context) error {
			return w.Wait(ctx, func() bool {
				for _, u := range stable {
					if w.Len(u) < 1 {
						return false
					}
				}
				return true
			})
		}); err != nil {
			return fmt.Errorf("users not online for the watcher: %w", err)
		}

		leases, err := followLeases(ctx, e)
		if err != nil {
			return err
		}
		ch := newChurn(e, r, churning, ws, 500*time.Millisecond, 45*time.Second)
		stopChurn := ch.run(ctx)
		defer ch.closeAll()
		e.Logf("starting %d busy loops for %s", hogs, dur(p.Hog))
		stopHogs, err := startHogs(hogs)
		if err != nil {
			stopChurn()
			return err
		}
		time.Sleep(p.Hog) // the hog and the churn run meanwhile
		stopHogs()
		stopChurn()
		e.Logf("stopped the busy loops")

		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		if _, _, err := ch.check(ctx, m); err != nil {
			return err
		}
		gaps, expired := leases.stop()
		for _, node := range expired {
			r.Violate("%s's lease was marked expired while it ran (I4)", node)
		}
		for _, u := range stable {
			if err := CheckSeq(w, u, []bool{true}); err != nil {
				r.Violate("%v", err)
			}
		}
		want := map[string]bool{}
		for _, u := range stable {
			want[u] = true
		}
		if err := Within(ctx, 10*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", want) }); err != nil {
			r.Violate("%v", err)
		}
		r.Measured = fmt.Sprintf("longest gap between renewals: gateway-1 %s, gateway-2 %s; %d leases expired; %d staying users ever offline",
			Dur(gaps["gateway-1"]), Dur(gaps["gateway-2"]), len(expired), flaps(w, stable))
		return nil
	})
}

// startHogs runs n busy loops as processes of their own, so they compete
// for the cores with every process of the cluster; stop kills them.
func startHogs(n int) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for range n {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start a busy loop: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}

// leaseLog follows the gateways' lease records: the longest gap between
// consecutive renewals of each (by the renewals' own timestamps) and which
// were ever marked expired.
type leaseLog struct {
	mu      sync.Mutex
	last    map[string]time.Time
	gaps    map[string]time.Duration
	expired map[string]bool
	stopW   func() error
}

func followLeases(ctx context.Context, e *Env) (*leaseLog, error) {
	js, err := e.JetStream()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, store.BucketNodes)
	if err != nil {
		return nil, err
	}
	watch, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	l := &leaseLog{last: map[string]time.Time{}, gaps: map[string]time.Duration{}, expired: map[string]bool{}, stopW: watch.Stop}
	go func() {
		for entry := range watch.Updates() {
			if entry == nil || entry.Operation() != jetstream.KeyValuePut {
				continue
			}
			var lease model.Lease
			if json.Unmarshal(entry.Value(), &lease) != nil {
				continue
			}
			l.mu.Lock()
			node := entry.Key()
			if lease.Expired {
				l.expired[node] = true
			}
			if prev, ok := l.last[node]; ok && lease.RenewedAt.After(prev) {
				l.gaps[node] = max(l.gaps[node], lease.RenewedAt.Sub(prev))
			}
			l.last[node] = lease.RenewedAt
			l.mu.Unlock()
		}
	}()
	return l, nil
}

// stop ends the watch and reports the gaps and the nodes marked expired.
func (l *leaseLog) stop() (gaps map[string]time.Duration, expired []string) {
	_ = l.stopW()
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := range l.expired {
		expired = append(expired, n)
	}
	return l.gaps, expired
}
