package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/resync"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/watch"
)

// TestReconnectedNodeAsksForWhatItWatches: the node's NATS connection
// drops (kicked by the server, as when a server dies); events sent
// meanwhile are lost to it, so once back it asks the workers for the
// current state of every user and channel its connections watch.
func TestReconnectedNodeAsksForWhatItWatches(t *testing.T) {
	h := newHarness(t)
	ws, first := h.dial("watcher", userToken(t, "watcher"), testKey, nil)
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := watch.Request{ConnID: first["connection_id"].(string), UserID: "watcher", Users: []string{"ann"}, CIDs: []string{"messaging:general"}}
	if err := watch.Send(ctx, h.nc, req); err != nil {
		t.Fatal(err)
	}
	// Listen on a connection of its own, which stays up.
	other, err := nats.Connect(h.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sub, err := other.SubscribeSync(subject.Resync)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	cid, err := h.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ns.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no resync request after the reconnect: %v", err)
	}
	r, err := resync.Decode(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Users, []string{"ann"}) || !slices.Equal(r.CIDs, []string{"messaging:general"}) {
		t.Fatalf("resync asked for users %v channels %v, want [ann] [messaging:general]", r.Users, r.CIDs)
	}
}
