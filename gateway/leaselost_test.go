package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/connid"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsserver"
)

// TestNoConnectStaysOnTheEpochOfALostLease: when the lease is lost,
// keepLease first closes every socket (one by one, each a blocking close
// handshake) and only then announces the new epoch. A connect admitted while
// closeAll runs gets the old epoch (g.epoch is not bumped yet), is not in
// closeAll's snapshot, and is never closed: it stays connected under an epoch
// the workers already treat as dead (learnEpoch(node, l.Epoch+1) on the
// expiry mark), so its opened is dropped and the user reads offline while
// connected (I1) for as long as the socket lives.
func TestNoConnectStaysOnTheEpochOfALostLease(t *testing.T) {
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{APIKey: testKey, APISecret: testSecret, NodeName: "gw-lost",
		LeaseTTL: time.Minute, LeaseInterval: 8 * time.Second, PingInterval: time.Minute, PingTimeout: time.Minute}
	gw, err := New(ctx, cfg, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(func() { srv.Close(); gw.Close() })
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/connect"

	// A peer that vanished: it never reads, so closing it waits out the
	// 5 s close-handshake timeout.
	dead, first, err := rawDial(t, u, "dead")
	if err != nil || first["type"] != "connection.ok" {
		t.Fatalf("dial: %v %v", err, first)
	}
	defer dead.CloseNow()

	// A worker marks the lease expired (what expireLeases does).
	e, err := gw.st.Nodes.Get(ctx, "gw-lost")
	if err != nil {
		t.Fatal(err)
	}
	var l model.Lease
	_ = json.Unmarshal(e.Value(), &l)
	oldEpoch := l.Epoch
	l.Expired = true
	b, _ := json.Marshal(l)
	if _, err := gw.st.Nodes.Update(ctx, "gw-lost", b, e.Revision()); err != nil {
		t.Fatal(err)
	}

	// keepLease ticks at 8 s, finds the lease lost and starts closeAll,
	// which blocks ~5 s on the dead peer. Connect in the middle of it.
	time.Sleep(9500 * time.Millisecond)
	late, lfirst, err := rawDial(t, u, "late")
	if err != nil || lfirst["type"] != "connection.ok" {
		t.Fatalf("late dial: %v %v", err, lfirst)
	}
	defer late.CloseNow()
	reviewReadAll(late)
	id, _ := connid.Parse(lfirst["connection_id"].(string))

	// Wait for the re-announce.
	deadline := time.Now().Add(15 * time.Second)
	var now model.Lease
	for time.Now().Before(deadline) {
		e, err := gw.st.Nodes.Get(context.Background(), "gw-lost")
		if err == nil {
			now = model.Lease{}
			_ = json.Unmarshal(e.Value(), &now)
			if now.Epoch != oldEpoch && !now.Expired {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if now.Epoch == oldEpoch || now.Expired {
		t.Fatalf("node never re-announced after losing its lease (lease %+v)", now)
	}
	time.Sleep(time.Second)
	gw.mu.Lock()
	_, stillOpen := gw.conns[id.String()]
	gw.mu.Unlock()
	t.Logf("late conn %s epoch %d (old %d, new %d) still open: %v", id, id.Epoch, oldEpoch, now.Epoch, stillOpen)
	if stillOpen && id.Epoch <= oldEpoch {
		t.Fatalf("connection %s was admitted after the lease was lost with the dead epoch %d (node now runs epoch %d) and is still open: workers drop its events, so %q reads offline while connected", id, id.Epoch, now.Epoch, "late")
	}
}

type reviewLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *reviewLogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *reviewLogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLostLeaseIsReannouncedOnAFreshDeadline: keepLease passes announce
// the ctx it made for one renewal (LeaseInterval, 2 s by default), after
// closeAll has spent it closing sockets one by one. One peer that does not
// answer the close handshake (5 s) is enough: announce fails with a
// deadline, the node keeps the dead epoch, and the next tick closes every
// socket again — including all clients that reconnected meanwhile.
func TestLostLeaseIsReannouncedOnAFreshDeadline(t *testing.T) {
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var logs reviewLogBuf
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{APIKey: testKey, APISecret: testSecret, NodeName: "gw-lost2",
		LeaseTTL: 10 * time.Second, LeaseInterval: 2 * time.Second, PingInterval: time.Minute, PingTimeout: time.Minute}
	gw, err := New(ctx, cfg, nc, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(func() { srv.Close(); gw.Close() })
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/connect"
	dead, first, err := rawDial(t, u, "dead")
	if err != nil || first["type"] != "connection.ok" {
		t.Fatalf("dial: %v %v", err, first)
	}
	defer dead.CloseNow()
	e, err := gw.st.Nodes.Get(ctx, "gw-lost2")
	if err != nil {
		t.Fatal(err)
	}
	var l model.Lease
	_ = json.Unmarshal(e.Value(), &l)
	l.Expired = true
	b, _ := json.Marshal(l)
	if _, err := gw.st.Nodes.Update(ctx, "gw-lost2", b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(9 * time.Second)
	if out := logs.String(); strings.Contains(out, "re-announce after lost lease") {
		i := strings.Index(out, "re-announce after lost lease")
		t.Fatalf("re-announce failed after closeAll spent the renewal's context: %s", strings.SplitN(out[i:], "\n", 2)[0])
	}
}
