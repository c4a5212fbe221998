package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/cluster"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/store"
)

// KVLossParams sizes the KV loss scenario. A zero duration is the
// services' default.
type KVLossParams struct {
	// Stay users keep their sockets; Gone users disconnect right after
	// the loss; Off users were offline before it.
	Stay, Gone, Off int
	LeaseTTL        time.Duration
	LeaseInterval   time.Duration
	LeaseCheck      time.Duration
	// Purge empties the bucket (every key, the workers' sentinel included)
	// instead of deleting it: the bucket is there, and empty, before any
	// worker has noticed the loss.
	Purge bool
}

// KVLoss: the presence bucket (presence_state) is deleted in the running
// cluster, and some users disconnect right after. The workers find the
// bucket gone, recreate it and have the gateways re-announce their live
// connections: within two lease periods KV says every connected user is
// online and everyone else offline (read straight from KV), REST follows
// (the api nodes rebuild their index of a recreated bucket), and transitions
// flow again afterwards. What the watchers were told must equal the truth
// too, with at most one refresh of a state they already had.
func KVLoss(s Size) Scenario { return kvLoss(s, false) }

// KVPurge is KVLoss with the bucket purged rather than deleted: it is
// there, empty, before any worker notices; the workers must find the
// missing sentinel and rebuild just the same.
func KVPurge(s Size) Scenario { return kvLoss(s, true) }

func kvLoss(s Size, purge bool) Scenario {
	p := KVLossParams{Stay: 20, Gone: 5, Off: 5, LeaseTTL: 5 * time.Second}
	if s == Full {
		// The production lease and checks.
		p = KVLossParams{Stay: 2000, Gone: 200, Off: 200}
	}
	p.Purge = purge
	return KVLossWith(p)
}

// KVLossWith is KVLoss with explicit parameters.
func KVLossWith(p KVLossParams) Scenario {
	env := map[string]string{}
	p.LeaseTTL = setting(env, "PRESENCE_LEASE_TTL", p.LeaseTTL, gatewayDefaults.LeaseTTL)
	p.LeaseInterval = setting(env, "PRESENCE_LEASE_INTERVAL", p.LeaseInterval, min(gatewayDefaults.LeaseInterval, p.LeaseTTL/10))
	p.LeaseCheck = setting(env, "PRESENCE_LEASE_CHECK", p.LeaseCheck, workerDefaults.LeaseCheck)
	sc := Scenario{
		Name:    "kv-loss",
		Title:   "KV loss (presence bucket deleted)",
		Env:     env,
		Timeout: 4*p.LeaseTTL + 3*time.Minute,
	}
	if p.Purge {
		sc.Name, sc.Title = "kv-purge", "KV loss (presence bucket purged)"
	}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		bound := 2 * p.LeaseTTL
		r.Setup = fmt.Sprintf("%d users connected, %d disconnecting right after the loss, %d offline before; lease %s, checked every %s", p.Stay, p.Gone, p.Off, dur(p.LeaseTTL), dur(p.LeaseCheck))
		r.Expected = fmt.Sprintf("KV and REST rebuilt ≤ 2 leases = %s, no user stuck", Dur(bound))
		pop, err := e.Populate(ctx, "kv", p.Stay+p.Gone+p.Off, "kv-watcher-1", "kv-watcher-2")
		if err != nil {
			return err
		}
		stay := pop.Users[:p.Stay]
		gone := pop.Users[p.Stay : p.Stay+p.Gone]
		off := pop.Users[p.Stay+p.Gone:]
		ws, err := e.Watchers(ctx, pop, "gateway-1", "gateway-2")
		if err != nil {
			return err
		}
		defer closeWatchers(ws)
		alternate := func(i int, _ string) string {
			if i%2 == 0 {
				return e.C.ConnectURL("gateway-1")
			}
			return e.C.ConnectURL("gateway-2")
		}
		stayConns, err := e.DialAll(ctx, stay, alternate)
		if err != nil {
			return err
		}
		defer func() { CloseAll(stayConns) }()
		goneConns, err := e.DialAll(ctx, gone, alternate)
		if err != nil {
			return err
		}
		offConns, err := e.DialAll(ctx, off, alternate)
		if err != nil {
			return err
		}
		err = Within(ctx, 30*time.Second, func(ctx context.Context) error {
			return WaitAll(ctx, ws, func(w *Watcher) bool {
				for _, u := range pop.Users {
					if w.Len(u) < 1 {
						return false
					}
				}
				return true
			})
		})
		if err != nil {
			return fmt.Errorf("users not online for the watchers: %w", err)
		}
		CloseAll(offConns)
		truth := map[string]bool{}
		for _, u := range pop.Users {
			truth[u] = true
		}
		for _, u := range off {
			truth[u] = false
		}
		if err := Within(ctx, 30*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", truth) }); err != nil {
			return err
		}
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		if err := Within(ctx, time.Minute, func(ctx context.Context) error { return e.Settle(ctx, m, ws) }); err != nil {
			return err
		}
		seen := map[*Watcher]map[string]int{}
		for _, w := range ws {
			seen[w] = map[string]int{}
			for _, u := range pop.Users {
				seen[w][u] = w.Len(u)
			}
		}

		js, err := e.JetStream()
		if err != nil {
			return err
		}
		lost := time.Now()
		if p.Purge {
			e.Logf("purging the %s bucket", store.BucketPresence)
			st, err := js.Stream(ctx, "KV_"+store.BucketPresence)
			if err != nil {
				return err
			}
			if err := st.Purge(ctx); err != nil {
				return err
			}
		} else {
			e.Logf("deleting the %s bucket", store.BucketPresence)
			if err := js.DeleteKeyValue(ctx, store.BucketPresence); err != nil {
				return err
			}
		}
		CloseAll(goneConns)
		for _, u := range gone {
			truth[u] = false
		}
		var wrong map[string]string
		rebuilt := func() (bool, error) {
			states, err := e.Presences(ctx, pop.Users)
			if err != nil {
				return false, err
			}
			wrong = map[string]string{}
			for _, u := range pop.Users {
				st, ok := states[u]
				if v := ok && st.Visible(); v != truth[u] {
					wrong[u] = onOff(v)
				}
			}
			return len(wrong) == 0, nil
		}
		err = Within(ctx, 2*bound+30*time.Second, func(ctx context.Context) error { return Poll(ctx, 50*time.Millisecond, rebuilt) })
		took := time.Since(lost)
		if err != nil {
			r.Violate("KV not rebuilt within %s: %d users wrong (%s); the bucket as each NATS node sees it: %s",
				2*bound+30*time.Second, len(wrong), describe(wrong, truth), e.bucketReport(ctx))
			r.Measured = "not rebuilt"
			return nil
		}
		if took > bound {
			r.Violate("KV rebuilt %s after the loss, more than two lease periods (%s)", Dur(took), Dur(bound))
		}
		e.Logf("KV rebuilt %s after the loss", Dur(took))

		// REST after the rebuild: the api nodes' index follows the
		// recreated bucket, within two lease periods too.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var restTook time.Duration
		for _, api := range []string{"api-1", "api-2"} {
			wg.Go(func() {
				if err := Within(ctx, bound, func(ctx context.Context) error { return e.WaitREST(ctx, api, truth) }); err != nil {
					r.Violate("%s after KV was rebuilt, REST still disagrees with it: %v", Dur(bound), err)
					return
				}
				mu.Lock()
				restTook = max(restTook, time.Since(lost))
				mu.Unlock()
			})
		}
		wg.Wait()
		// The watchers after the rebuild, once everything has settled. A
		// gateway may still hold an event for its predecessor (up to half a
		// second, by design): the watchers get a few seconds to agree
		// before what they hold is judged.
		if err := Within(ctx, time.Minute, func(ctx context.Context) error { return e.Settle(ctx, m, ws) }); err != nil {
			return err
		}
		agreed := func(w *Watcher) bool {
			for _, u := range pop.Users {
				if o, _ := w.Last(u); o != truth[u] {
					return false
				}
			}
			return true
		}
		_ = Within(ctx, 5*time.Second, func(ctx context.Context) error { return WaitAll(ctx, ws, agreed) })
		for _, w := range ws {
			var stuck, repeated []string
			for _, u := range pop.Users {
				if o, _ := w.Last(u); o != truth[u] {
					stuck = append(stuck, fmt.Sprintf("%s reads %s (want %s; received: %s, %d before the loss)", u, onOff(o), onOff(truth[u]), Format(w.Seq(u)), seen[w][u]))
				}
				// The first event after the loss may repeat the state the
				// watcher has: the rebuilt state announces each user once
				// (a refresh, not a flap). Beyond it, every event is a
				// transition.
				seq := w.Seq(u)
				for i := seen[w][u] + 1; i < len(seq); i++ {
					if seq[i].Online == seq[i-1].Online {
						repeated = append(repeated, fmt.Sprintf("%s: %s", u, Format(seq)))
						break
					}
				}
			}
			if len(stuck) > 0 {
				r.Violate("after the rebuild, watcher %s (on %s) is left with the wrong state for %d users: %s", w.Name, w.Gateway, len(stuck), summarize(stuck))
			}
			if len(repeated) > 0 {
				r.Violate("after the rebuild, watcher %s (on %s) received the same state twice in a row (beyond the one refresh) for %d users: %s", w.Name, w.Gateway, len(repeated), summarize(repeated))
			}
		}

		// Transitions flow after the rebuild: one connected user leaves,
		// one offline user comes back.
		leaver, comer := stay[0], off[0]
		want := map[*Watcher][2]int{}
		for _, w := range ws {
			want[w] = [2]int{w.Len(leaver) + 1, w.Len(comer) + 1}
		}
		stayConns[0].Close()
		stayConns[0] = nil
		c, err := DialRetry(ctx, e.C.ConnectURL("gateway-1"), e.Creds, comer, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		truth[leaver], truth[comer] = false, true
		err = Within(ctx, 10*time.Second, func(ctx context.Context) error {
			return WaitAll(ctx, ws, func(w *Watcher) bool {
				return w.Len(leaver) >= want[w][0] && w.Len(comer) >= want[w][1]
			})
		})
		if err != nil {
			r.Violate("after the rebuild, a disconnect and a connect did not reach the watchers: %v", err)
		}
		for _, w := range ws {
			if o, _ := w.Last(leaver); o {
				r.Violate("after the rebuild, watcher %s got %s for %s, who left", w.Name, Format(w.Seq(leaver)), leaver)
			}
			if o, _ := w.Last(comer); !o {
				r.Violate("after the rebuild, watcher %s got %s for %s, who came back", w.Name, Format(w.Seq(comer)), comer)
			}
		}
		after := map[string]bool{leaver: false, comer: true}
		if err := Within(ctx, 5*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", after) }); err != nil {
			r.Violate("after the rebuild, REST does not show new transitions: %v", err)
		}
		if _, err := rebuilt(); err != nil {
			return err
		} else if len(wrong) > 0 {
			r.Violate("after the rebuild, KV is wrong for %s", describe(wrong, truth))
		}
		r.Measured = fmt.Sprintf("KV rebuilt %s after the loss, REST (both api nodes) %s", Dur(took), Dur(restTook))
		return nil
	})
}

// bucketReport describes the presence bucket as each NATS node answers for
// it: what a failed rebuild is diagnosed from.
func (e *Env) bucketReport(ctx context.Context) string {
	var out []string
	for _, n := range e.C.Topology().Of(cluster.NATS) {
		out = append(out, n.Name+": "+bucketOn(ctx, e.C.URLAs(n.Name, natsauth.Admin)))
	}
	return strings.Join(out, "; ")
}

func bucketOn(ctx context.Context, url string) string {
	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_"+store.BucketPresence)
	if err != nil {
		return "stream: " + err.Error()
	}
	info := st.CachedInfo()
	desc := fmt.Sprintf("%d messages, last seq %d, created %s", info.State.Msgs, info.State.LastSeq, info.Created.Format(time.RFC3339Nano))
	if info.Cluster != nil {
		desc += fmt.Sprintf(", leader %q, %d replicas", info.Cluster.Leader, len(info.Cluster.Replicas))
	}
	kv, err := js.KeyValue(ctx, store.BucketPresence)
	if err != nil {
		return desc + "; bucket: " + err.Error()
	}
	if s, err := kv.Get(ctx, store.SentinelKey); err != nil {
		desc += "; sentinel: " + err.Error()
	} else {
		desc += fmt.Sprintf("; sentinel %q at %d", s.Value(), s.Revision())
	}
	return desc
}
