package gateway

import (
	"testing"

	"github.com/coder/websocket"
)

// TestWatchRacingACloseLeaksNothing replays the interleaving of
// handleWatch (looks the connection up under g.mu, releases it, then calls
// relay.watch) with forget (deletes the connection, then relay.drop). When
// drop runs in between, the watch lands on a connection nobody will ever
// drop again: its NATS subscriptions and index entries leak for the life of
// the node, and deliver keeps enqueueing into the dead connection.
func TestWatchRacingACloseLeaksNothing(t *testing.T) {
	h := newHarness(t)
	ws, first := h.dial("wat", userToken(t, "wat"), testKey, nil)
	readFrame(t, ws) // health.check
	id := first["connection_id"].(string)

	// handleWatch, first half: g.conns lookup.
	h.gw.mu.Lock()
	c := h.gw.conns[id]
	h.gw.mu.Unlock()
	if c == nil {
		t.Fatal("connection not registered")
	}

	// The socket ends: forget removes c and drops its watches, then
	// publishes "closed" (the second input event).
	ws.Close(websocket.StatusNormalClosure, "")
	h.inputEvents(2)

	// handleWatch, second half: the watch lands on the dropped connection.
	if !h.gw.relay.watch(c, []string{"ann"}, []string{"messaging:a"}, h.gw.cfg.MaxWatches) {
		t.Fatal("watch refused")
	}
	h.gw.relay.mu.Lock()
	subs, users, cids := len(h.gw.relay.subs), len(h.gw.relay.byUser), len(h.gw.relay.byCID)
	h.gw.relay.mu.Unlock()
	if subs != 0 || users != 0 || cids != 0 {
		t.Fatalf("after the connection closed the relay still holds %d subscriptions, %d user and %d channel entries for it: leaked forever", subs, users, cids)
	}
}
