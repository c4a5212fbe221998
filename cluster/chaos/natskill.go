package chaos

import (
	"context"
	"fmt"
	"time"
)

// NATSKillParams sizes the NATS node kill scenario.
type NATSKillParams struct {
	Users         int
	Before, After time.Duration
	Hold          time.Duration
}

// NATSKill: users connect and disconnect steadily (as in WorkerKill) while
// the NATS node leading the workers' input stream is killed with SIGKILL
// (one of three; streams and buckets keep a quorum). Services reconnect to
// the others, leaders move, and presence converges: no transition lost or
// duplicated, no user stuck, final state = truth through REST and for
// every watcher. Measured: the time from the kill until every user has
// completed a transition begun after it.
// Leases and pings keep their production defaults: a NATS failover must not
// expire a live gateway.
func NATSKill(s Size) Scenario {
	p := NATSKillParams{Users: 20, Before: 3 * time.Second, After: 8 * time.Second, Hold: 150 * time.Millisecond}
	if s == Full {
		p = NATSKillParams{Users: 300, Before: 10 * time.Second, After: 30 * time.Second, Hold: time.Second}
	}
	return NATSKillWith(p)
}

// NATSKillWith is NATSKill with explicit parameters.
func NATSKillWith(p NATSKillParams) Scenario {
	sc := Scenario{Name: "nats-kill", Title: "NATS node kill -9", Timeout: p.Before + p.After + 3*time.Minute}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		const stepTimeout = 45 * time.Second
		r.Setup = fmt.Sprintf("%d users connecting/disconnecting steadily, the input stream's leader killed (1 of 3 nodes), %s more; 2 watchers", p.Users, dur(p.After))
		r.Expected = "transitions flow again; final state = truth (REST, watchers); 0 lost, 0 duplicated"
		pop, err := e.Populate(ctx, "nk", p.Users, "nk-watcher-1", "nk-watcher-2")
		if err != nil {
			return err
		}
		ws, err := e.Watchers(ctx, pop, "gateway-1", "gateway-2")
		if err != nil {
			return err
		}
		defer closeWatchers(ws)
		ch := newChurn(e, r, pop.Users, ws, p.Hold, stepTimeout)
		began := time.Now()
		stop := ch.run(ctx)
		defer ch.closeAll()
		time.Sleep(p.Before) // the workload runs meanwhile
		leader, err := e.StreamLeader(ctx)
		if err != nil {
			stop()
			return err
		}
		e.Logf("kill -9 %s (pid %d), the input stream's leader", leader, e.C.Pid(leader))
		killed := time.Now()
		if err := e.C.Kill(leader); err != nil {
			stop()
			return err
		}
		time.Sleep(p.After)
		stop()
		newLeader, _ := e.StreamLeader(ctx)
		e.Logf("stopped the workload %s after the kill; the stream's leader is now %s", Dur(time.Since(killed)), newLeader)
		for _, n := range []string{"worker-1", "worker-2", "gateway-1", "gateway-2", "api-1", "api-2"} {
			if !e.C.Running(n) {
				r.Violate("%s is not running after the NATS node's kill", n)
			}
		}
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		transitions, duplicated, err := ch.check(ctx, m)
		if err != nil {
			return err
		}
		if duplicated > 0 {
			r.Violate("%d transitions duplicated", duplicated)
		}
		firstNew, allMoving, longest, users := ch.recovery(killed)
		if users < len(pop.Users) {
			r.Violate("only %d of %d users had a transition after the kill", users, len(pop.Users))
		}
		before := ch.stepLatency(began, killed)
		r.Measured = fmt.Sprintf("first new transition %s after the kill, every user's again after %s (longest stall %s; before the kill %s); %d lost, %d duplicated of %d transitions; %d connects refused and retried",
			Dur(firstNew), Dur(allMoving), Dur(longest), P50Max(before), ch.lost, duplicated, transitions, ch.failedConnects)
		return nil
	})
}
