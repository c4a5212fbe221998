package worker

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/subject"
)

func (h *harness) putLease(node string, epoch uint64, ttl time.Duration) {
	h.t.Helper()
	b, _ := json.Marshal(model.Lease{Epoch: epoch, RenewedAt: time.Now().UTC(), TTL: ttl})
	if _, err := h.st.Nodes.Put(context.Background(), node, b); err != nil {
		h.t.Fatal(err)
	}
}

func opening(node, user, conn string) connevent.Event {
	return connevent.Event{Kind: connevent.Opened, User: user, ConnID: conn, Node: node, Epoch: 1, At: time.Now().UTC()}
}

// TestDeadNodesUsersGoOfflineLiveNodesUsersStay proves I4: a gateway that
// stops renewing its lease has its users taken offline, one transition
// each, while a gateway that renews keeps its users online.
func TestDeadNodesUsersGoOfflineLiveNodesUsersStay(t *testing.T) {
	h := newHarness(t)
	const ttl = 400 * time.Millisecond
	h.putLease("dead", 1, ttl)
	h.putLease("live", 1, ttl)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the live gateway renews well inside its TTL
		for ctx.Err() == nil {
			h.putLease("live", 1, ttl)
			select {
			case <-ctx.Done():
			case <-time.After(ttl / 5):
			}
		}
	}()
	h.publish(opening("dead", "ann", "d1"))
	h.publish(opening("dead", "bob", "d2"))
	h.publish(opening("live", "cat", "l1"))
	h.publish(opening("live", "bob", "l2")) // bob is also connected elsewhere
	for range 3 {
		if _, _, online := h.next(); !online {
			t.Fatal("want three users online first")
		}
	}
	start := time.Now()
	subj, _, online := h.next()
	if online || subj != subject.UserEvents("ann") {
		t.Fatalf("got %s online=%v, want ann offline", subj, online)
	}
	if took := time.Since(start); took > 10*ttl {
		t.Fatalf("ann went offline %v after the node stopped renewing, want about the lease (%v)", took, ttl)
	}
	// Nothing else may change: a marker is the next event.
	h.publish(opening("live", "marker", "m1"))
	if subj, _, _ := h.next(); subj != subject.UserEvents("marker") {
		t.Fatalf("unexpected event on %s: bob (connected elsewhere) and cat (live node) must stay online", subj)
	}
}

func TestCloseWithGraceAndAReconnectMeansNoFlap(t *testing.T) {
	h := newHarness(t)
	h.publish(opening("gw", "ann", "a1"))
	if _, _, online := h.next(); !online {
		t.Fatal("want ann online")
	}
	closing := ev(connevent.Closed, "ann", "a1")
	closing.Grace = 300 * time.Millisecond
	h.publish(closing)
	h.publish(opening("gw2", "ann", "a2")) // reconnected through another gateway
	// After the grace, the old connection's close is applied: still online.
	// Then the new connection closes without grace: one offline.
	h.publish(ev(connevent.Closed, "ann", "a2"))
	// a2's close is applied at once while a1 is still held: ann stays online
	// until a1's grace ends, then goes offline exactly once.
	start := time.Now()
	_, v, online := h.next()
	if online || v != 2 {
		t.Fatalf("got v%d online=%v, want one offline transition (v2)", v, online)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatalf("offline after %v: the grace of the drained connection was not honoured", time.Since(start))
	}
}

// TestHeartbeatsKeepALeaseWhoseRenewalsStall: a gateway's lease record
// stops being renewed (JetStream too loaded to store the renewals in time)
// while its heartbeats keep coming: its users stay online. When the
// heartbeats stop too, the node is dead and its users go offline. A
// heartbeat of another epoch (an earlier run) keeps nothing alive.
func TestHeartbeatsKeepALeaseWhoseRenewalsStall(t *testing.T) {
	h := newHarness(t)
	const ttl = 400 * time.Millisecond
	h.putLease("busy", 1, ttl)
	h.publish(opening("busy", "ann", "b1"))
	if _, _, online := h.next(); !online {
		t.Fatal("want ann online")
	}
	beat := func(epoch uint64) {
		if err := h.nc.Publish(subject.GatewayAlive("busy"), []byte(strconv.FormatUint(epoch, 10))); err != nil {
			t.Error(err)
		}
	}
	// Ten lease periods of heartbeats and no renewal: still online. A
	// marker's transition, published after, must be the next event.
	for range 50 {
		beat(1)
		time.Sleep(ttl / 5) // the heartbeat's period, not a wait for something
	}
	h.publish(opening("busy", "marker", "m1"))
	if subj, _, _ := h.next(); subj != subject.UserEvents("marker") {
		t.Fatalf("event on %s while the node's heartbeats kept coming; want the marker's", subj)
	}
	// From now on only heartbeats of another epoch: ann goes offline
	// within about the lease.
	stop := time.Now()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(ttl / 5):
				beat(2)
			}
		}
	}()
	offline := map[string]bool{}
	for range 2 { // ann and the marker, both on the node, in any order
		subj, _, online := h.next()
		if online {
			t.Fatalf("got %s online, want ann and the marker offline", subj)
		}
		offline[subj] = true
	}
	if !offline[subject.UserEvents("ann")] || !offline[subject.UserEvents("marker")] {
		t.Fatalf("offline: %v, want ann and the marker", offline)
	}
	if took := time.Since(stop); took > 10*ttl {
		t.Fatalf("offline %v after the heartbeats stopped, want about the lease (%v)", took, ttl)
	}
}
