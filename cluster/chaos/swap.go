package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SwapParams sizes the swap scenario.
type SwapParams struct {
	Users int
	Swaps int
}

// Swap is what a reconnect storm does to each user, repeated: the user's
// socket closes and a new one opens on the other gateway at the same
// moment, so the user's closed and opened events reach the workers
// together and are often applied by two different workers, whose
// publishes race. Whatever order they are applied and published in, every
// watcher must receive the user's transitions once each and in order:
// never the same state twice in a row (I2). Workers publish another
// worker's event again before their own when it is recent, so the race
// cannot reorder them at a gateway.
func Swap(s Size) Scenario {
	p := SwapParams{Users: 100, Swaps: 20}
	if s == Full {
		p = SwapParams{Users: 500, Swaps: 40}
	}
	return SwapWith(p)
}

// swapSendQueue is the gateways' send queue in the swap scenario.
const swapSendQueue = 4096

// SwapWith is Swap with explicit parameters.
func SwapWith(p SwapParams) Scenario {
	// The watchers are the instruments here: each gets every user's events
	// in bursts (500 connects at once), and one stall of the process that
	// reads them (right after the storm's 20,000 clients, in make chaos)
	// filled the default queue of 256, and the gateway closed the watcher
	// as too slow before the scenario began.
	sc := Scenario{Name: "swap", Title: "close + reconnect at once", Timeout: 5 * time.Minute,
		Env: map[string]string{"PRESENCE_SEND_QUEUE": fmt.Sprint(swapSendQueue)}}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		r.Setup = fmt.Sprintf("%d users each closing a socket and opening another at once, %d times; 2 watchers; send queue %d", p.Users, p.Swaps, swapSendQueue)
		r.Expected = "watchers: never the same state twice in a row; final state online"
		pop, err := e.Populate(ctx, "sw", p.Users, "sw-watcher-1", "sw-watcher-2")
		if err != nil {
			return err
		}
		ws, err := e.Watchers(ctx, pop, "gateway-1", "gateway-2")
		if err != nil {
			return err
		}
		defer closeWatchers(ws)
		gw := []string{e.C.ConnectURL("gateway-1"), e.C.ConnectURL("gateway-2")}
		conns, err := e.DialAll(ctx, pop.Users, func(i int, _ string) string { return gw[i%2] })
		if err != nil {
			return err
		}
		defer func() { DropAll(conns) }()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for i, u := range pop.Users {
			wg.Go(func() {
				for s := range p.Swaps {
					old := conns[i]
					done := make(chan struct{})
					go func() { defer close(done); old.Close() }()
					c, err := DialRetry(ctx, gw[(i+s+1)%2], e.Creds, u, nil)
					<-done
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
					conns[i] = c
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return errs[0]
		}
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		if err := Within(ctx, time.Minute, func(ctx context.Context) error { return e.Settle(ctx, m, ws) }); err != nil {
			return err
		}
		on := true
		twice := 0
		for _, w := range ws {
			for _, u := range pop.Users {
				if o, _ := w.Last(u); !o {
					r.Violate("watcher %s is left with %s offline", w.Name, u)
				}
				if err := CheckAlternating(w, u, &on); err != nil {
					twice++
					r.Violate("%v", err)
				}
			}
		}
		want := map[string]bool{}
		for _, u := range pop.Users {
			want[u] = true
		}
		if err := Within(ctx, 10*time.Second, func(ctx context.Context) error { return e.WaitREST(ctx, "api-1", want) }); err != nil {
			r.Violate("%v", err)
		}
		r.Measured = fmt.Sprintf("%d of %d user sequences (x%d watchers) received the same state twice in a row", twice, p.Users*len(ws), len(ws))
		return nil
	})
}
