package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/model"
)

// TestNoConnectStaysOnTheEpochOfALostLease: when a worker expires the
// node's lease, the node starts a new epoch at once (even with a dead peer
// whose close handshake never completes) and no connection stays open on the
// old epoch, including ones admitted while the switch happens: the workers
// already treat that epoch as gone, so such a user would read offline while
// connected (I1).
func TestNoConnectStaysOnTheEpochOfALostLease(t *testing.T) {
	h := newHarnessWith(t, Config{LeaseTTL: time.Minute, LeaseInterval: 50 * time.Millisecond})
	dead, _ := h.dial("dead", userToken(t, "dead"), testKey, nil) // never reads: its close handshake hangs
	defer dead.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := h.gw.st.Nodes.Get(ctx, "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	var l model.Lease
	_ = json.Unmarshal(e.Value(), &l)
	oldEpoch := l.Epoch
	l.Expired = true
	b, _ := json.Marshal(l)

	// Clients keep connecting while the lease is lost and recovered.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			ws, _, err := rawDial(t, h.url, "late")
			if err == nil {
				rawReadAll(ws)
				defer ws.CloseNow()
			}
		}
	}()
	if _, err := h.gw.st.Nodes.Update(ctx, "gw-test", b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	for h.gw.epoch.Load() == oldEpoch {
		if ctx.Err() != nil {
			t.Fatal("no new epoch after the lease was lost")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	stop.Store(true)
	wg.Wait()
	for {
		h.gw.mu.Lock()
		stale := 0
		for _, c := range h.gw.conns {
			if c.epoch != h.gw.epoch.Load() {
				stale++
			}
		}
		h.gw.mu.Unlock()
		if stale == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d connections still open on the epoch of the lost lease", stale)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}
