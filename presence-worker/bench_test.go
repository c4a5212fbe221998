package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// BenchmarkWorkerTransitions measures what one worker applies and emits,
// without WebSockets in the way: b.N connection events, each a transition
// (1,000 users going online and offline in turn), published to JetStream as
// fast as it takes them; the clock stops when the last presence event is
// out. Embedded NATS runs in the same process, as in make run.
//
//	go test ./presence-worker -run '^$' -bench WorkerTransitions -benchtime 20000x
func BenchmarkWorkerTransitions(b *testing.B) {
	const users = 1000
	ns := natsserver.StartForTest(b)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := store.Setup(ctx, js, store.Options{}); err != nil {
		b.Fatal(err)
	}
	// Events go out on each user's subject and each of their channels'; the
	// users here are in none, so one per transition.
	var emitted atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	sub, err := nc.Subscribe(subject.EventsAll, func(*nats.Msg) {
		if emitted.Add(1) == target {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	wnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wnc.Close)
	w, err := New(ctx, Config{}, wnc, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	began := time.Now()
	for i := range b.N {
		u := fmt.Sprintf("u%d", i%users)
		kind := connevent.Opened
		if (i/users)%2 == 1 {
			kind = connevent.Closed
		}
		// Each open and its close share a connection of their own.
		conn := fmt.Sprintf("gw-1-%d-%s", i/(2*users), u)
		ev := connevent.Event{Kind: kind, User: u, ConnID: conn, Node: "gw", Epoch: 1, At: time.Now().UTC()}
		if _, err := js.PublishAsync(subject.ConnEvent(ev.Node, ev.User), ev.Encode(), jetstream.WithMsgID(ev.MsgID())); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishes not acknowledged")
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d transitions emitted within 2 minutes", emitted.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "transitions/s")
}
