package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// TestConnectThatChangesTheProfileAnnouncesIt: a connect whose details
// change what watchers see (status) is announced to the workers, which emit
// user.updated in the user's one event sequence, after any presence change
// the same connect caused (so an invisible user's update never reads online
// after their offline, I1, I2).
func TestConnectThatChangesTheProfileAnnouncesIt(t *testing.T) {
	h := newHarness(t)
	h.dial("ivy", userToken(t, "ivy"), testKey, map[string]any{"id": "ivy", "status": "here"})
	h.dial("ivy", userToken(t, "ivy"), testKey, map[string]any{"id": "ivy", "status": "away", "invisible": true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, store.StreamInput, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.UserCommand("ivy")}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("no profile change announced: %v", err)
	}
	ev, _ := connevent.Decode(msg.Data())
	e, err := h.gw.st.Users.Get(ctx, store.Key("ivy"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != connevent.ProfileChanged || ev.User != "ivy" || ev.ProfileRev != e.Revision() {
		t.Fatalf("announced %+v, want a profile change of ivy at revision %d", ev, e.Revision())
	}
}
