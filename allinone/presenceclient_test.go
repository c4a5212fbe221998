package allinone

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/presenceclient"
)

// Another service, connected as the read-only user, asks who is online and
// watches presence change with pkg/presenceclient, answered by the api
// node's NATS service.
func TestAnotherServiceGetsPresenceOverNATS(t *testing.T) {
	p := startForTest(t, Config{})
	nc, err := nats.Connect(p.NATSURLAs(natsauth.Reader))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pc := presenceclient.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rest(t, p, "POST", "/users", map[string]any{"users": map[string]any{
		"ann": map[string]any{"id": "ann", "name": "Ann"},
		"bob": map[string]any{"id": "bob"},
		"eve": map[string]any{"id": "eve", "invisible": true},
	}})
	rest(t, p, "POST", "/channels/messaging/room/query", map[string]any{"data": map[string]any{
		"created_by_id": "ann", "members": []string{"ann", "bob", "eve"},
	}})
	events, err := pc.Watch(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}

	connectUser(t, p, "eve") // invisible: connected, never shown online
	ws := connectUser(t, p, "ann")
	select {
	case ev := <-events:
		if ev.User.ID != "ann" || !ev.User.Online || ev.Version == 0 {
			t.Fatalf("watch: got %+v, want ann online", ev)
		}
	case <-ctx.Done():
		t.Fatal("no presence event for ann")
	}

	var got map[string]presenceclient.User
	waitFor(t, "ann online for Get", 10*time.Second, func() bool {
		got, err = pc.Get(ctx, []string{"ann", "bob", "eve", "nobody"})
		return err == nil && got["ann"].Online
	})
	if !got["ann"].Online || got["ann"].Name != "Ann" || got["bob"].Online || got["eve"].Online {
		t.Fatalf("Get: ann %+v, bob %+v, eve %+v; want only ann online (eve is invisible)", got["ann"], got["bob"], got["eve"])
	}
	if _, ok := got["nobody"]; ok {
		t.Fatal("Get returned a user Presence does not know")
	}
	if _, shown := got["eve"].Fields["invisible"]; shown {
		t.Fatal("Get shows the invisible flag to another service")
	}
	online, err := pc.OnlineMembers(ctx, "messaging", "room")
	if err != nil {
		t.Fatal(err)
	}
	if len(online) != 1 || online[0].ID != "ann" {
		t.Fatalf("OnlineMembers = %+v, want ann alone (eve is invisible)", online)
	}

	ws.Close(websocket.StatusNormalClosure, "")
	select {
	case ev := <-events:
		if ev.User.ID != "ann" || ev.User.Online {
			t.Fatalf("watch: got %+v, want ann offline", ev)
		}
	case <-ctx.Done():
		t.Fatal("no offline event for ann")
	}

	if _, err := pc.Get(ctx, []string{"not.valid"}); !errors.Is(err, presenceclient.ErrInvalid) {
		t.Fatalf("Get of an invalid id: %v, want ErrInvalid", err)
	}
	if _, err := pc.OnlineMembers(ctx, "messaging", "nowhere"); !errors.Is(err, presenceclient.ErrNotFound) {
		t.Fatalf("OnlineMembers of a missing channel: %v, want ErrNotFound", err)
	}
}
