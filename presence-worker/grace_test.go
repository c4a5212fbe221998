package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/store"
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
	// Twice as many held closes as events may be in flight at once.
	const inFlight, n = 200, 400
	h := newHarnessWith(t, Config{MaxAckPending: inFlight})
	at := time.Now().UTC()
	for i := 0; i < n; i++ {
		ev := connevent.Event{Kind: connevent.Closed, User: fmt.Sprintf("u%d", i), ConnID: fmt.Sprintf("c%d", i), Node: "gw", Epoch: 1, At: at, Grace: time.Minute}
		if _, err := h.js.PublishAsync(subject.ConnEvent("gw", ev.User), ev.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing the drained closes took too long")
	}
	// Wait until every close is held (moved off the main consumer).
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := consumerInfo(h, store.StreamGrace, store.ConsumerGrace)
		if err == nil && info.NumAckPending+int(info.NumPending) >= n && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closes not held after 30s: %+v %v", info, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	h.publish(ev(connevent.Opened, "probe", "p1"))
	timeout := time.After(20 * time.Second)
	for {
		select {
		case msg := <-h.events:
			if msg.Subject == subject.UserEvents("probe") {
				return
			}
		case <-timeout:
			info, _ := consumerInfo(h, store.StreamInput, store.ConsumerWorkers)
			t.Fatalf("an unrelated user's connect was not applied while %d closes were held (main consumer: ack pending %d, waiting %d)", n, info.NumAckPending, info.NumPending)
		}
	}
}

func consumerInfo(h *harness, stream, name string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := h.js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}
