package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/subject"
)

// TestHeldClosesDoNotStallOtherUsers: a Closed with grace is NAKed with
// a delay, but a delayed NAK keeps the message in the consumer's pending set
// (nats-server processNak only moves its timestamp), so it counts against
// MaxAckPending (20000) until the grace runs out. Draining one gateway of
// more than 20000 sockets (the design's node holds 100k) therefore stops
// delivery on the shared durable consumer for every worker for DrainGrace:
// other users' transitions stall, and the drained users' own reconnect
// "opened" events wait behind their grace-held closes, so the closes apply
// first — the offline/online flap the grace was meant to prevent.
func TestHeldClosesDoNotStallOtherUsers(t *testing.T) {
	h := newHarness(t)
	const n = 20000
	at := time.Now().UTC()
	for i := 0; i < n; i++ {
		ev := connevent.Event{Kind: connevent.Closed, User: fmt.Sprintf("u%d", i), ConnID: fmt.Sprintf("c%d", i), Node: "gw", Epoch: 1, At: at, Grace: 20 * time.Second}
		if _, err := h.js.PublishAsync(subject.ConnEvent("gw", ev.User), ev.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing the drained closes took too long")
	}
	time.Sleep(2 * time.Second) // let the worker take (and NAK) them
	start := time.Now()
	h.publish(ev(connevent.Opened, "probe", "p1"))
	deadline := time.After(8 * time.Second)
	for {
		select {
		case msg := <-h.events:
			if msg.Subject == subject.UserEvents("probe") {
				t.Logf("probe online after %v", time.Since(start))
				return
			}
		case <-deadline:
			info, _ := mustConsumerInfo(h)
			t.Fatalf("an unrelated user's connect was not applied within 8s while %d grace-held closes were pending (ack pending %d, waiting %d)", n, info.NumAckPending, info.NumPending)
		}
	}
}

func mustConsumerInfo(h *harness) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := h.js.Consumer(ctx, "PRESENCE_IN", "presence-workers")
	if err != nil {
		return &jetstream.ConsumerInfo{}, err
	}
	return c.Info(ctx)
}
