package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/watch"
)

// TestConnectUserUpdatedNeverShowsAnInvisibleUserOnline: ivy is online on
// one connection; she opens a second one with {invisible: true, status:
// "away"} (the SDK's connectUser({id, invisible: true, ...})). The status
// change makes the gateway publish user.updated, built with model.View over
// the presence state read before the worker applied the new flag (the api
// uses userView, which honours the profile's flag for exactly this window).
// Watchers get online: true and a fresh last_active for a user whose profile
// is already invisible (I1). If that copy reaches a node after the worker's
// offline transition (separate version streams, no ordering between them),
// the SDK keeps her online for as long as she stays invisible.
func TestConnectUserUpdatedNeverShowsAnInvisibleUserOnline(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// ivy exists and is online (visible) on another connection.
	_, first := h.dial("ivy", userToken(t, "ivy"), testKey, map[string]any{"id": "ivy", "status": "here"})
	p := model.Presence{Conns: map[string]model.Conn{first["connection_id"].(string): {Node: "gw-test", Epoch: 1, OpenedAt: time.Now()}},
		Online: true, Version: 1, LastActive: time.Now().UTC()}
	b, _ := json.Marshal(p)
	if _, err := h.gw.st.Presence.Put(ctx, store.Key("ivy"), b); err != nil {
		t.Fatal(err)
	}

	// wat watches ivy.
	ws, wfirst := h.dial("wat", userToken(t, "wat"), testKey, nil)
	readFrame(t, ws) // health.check
	if err := watch.Send(ctx, h.nc, watch.Request{ConnID: wfirst["connection_id"].(string), UserID: "wat", Users: []string{"ivy"}}); err != nil {
		t.Fatal(err)
	}

	// ivy connects again, invisible, with a new status.
	h.dial("ivy", userToken(t, "ivy"), testKey, map[string]any{"id": "ivy", "status": "away", "invisible": true})

	f := readFrame(t, ws)
	if f["type"] != event.UserUpdated {
		t.Fatalf("watcher got %v, want user.updated", f)
	}
	u := f["user"].(map[string]any)
	if u["online"] == true {
		t.Fatalf("user.updated for a user whose profile is invisible says online: true (%v)", u)
	}
}
