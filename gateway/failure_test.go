package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/watch"
)

// waitClose reads until the socket closes and returns its close status.
func waitClose(t *testing.T, ws *websocket.Conn, within time.Duration) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("socket still open after %v", within)
			}
			return websocket.CloseStatus(err)
		}
	}
}

func TestSilentClientIsClosedAfterUnansweredPing(t *testing.T) {
	h := newHarnessWith(t, Config{PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	// A client that never reads never answers pings: like a laptop whose lid
	// was shut, it neither closes nor sends anything.
	_, first := h.dial("ann", userToken(t, "ann"), testKey, nil)
	evs := h.inputEvents(2)
	if evs[1].Kind != connevent.Closed || evs[1].ConnID != first["connection_id"] {
		t.Fatalf("after silence published %+v, want the connection closed", evs[1])
	}
	if evs[1].At.Sub(evs[0].At) > 2*time.Second {
		t.Fatalf("silent client closed after %v, want within ping interval + timeout", evs[1].At.Sub(evs[0].At))
	}
}

func TestConnectRateLimitAnswersRetryably(t *testing.T) {
	h := newHarnessWith(t, Config{ConnectRate: 0.001, ConnectBurst: 1})
	h.dial("ann", userToken(t, "ann"), testKey, nil)
	ws, first := h.dial("bob", userToken(t, "bob"), testKey, nil)
	e, _ := first["error"].(map[string]any)
	if e == nil || e["code"] != float64(9) || e["StatusCode"] != float64(429) {
		t.Fatalf("second connect got %v, want rate-limit code 9 status 429", first)
	}
	if code := waitClose(t, ws, 5*time.Second); code != websocket.StatusTryAgainLater {
		t.Fatalf("close %v, want 1013 so the SDK retries", code)
	}
}

// TestConnectsUnderWayAreBounded: with every admission slot taken (the
// connects before it still wait on JetStream), a connect is answered with
// the retryable rate-limit error once ConnectWait has passed, and admitted
// once a slot frees.
func TestConnectsUnderWayAreBounded(t *testing.T) {
	h := newHarnessWith(t, Config{ConnectInFlight: 1, ConnectWait: 50 * time.Millisecond})
	h.gw.admitting <- struct{}{} // a connect under way
	ws, first := h.dial("ann", userToken(t, "ann"), testKey, nil)
	e, _ := first["error"].(map[string]any)
	if e == nil || e["code"] != float64(9) || e["StatusCode"] != float64(429) {
		t.Fatalf("connect got %v, want rate-limit code 9 status 429", first)
	}
	if code := waitClose(t, ws, 5*time.Second); code != websocket.StatusTryAgainLater {
		t.Fatalf("close %v, want 1013 so the SDK retries", code)
	}
	<-h.gw.admitting
	if _, first := h.dial("ann", userToken(t, "ann"), testKey, nil); first["type"] != event.ConnectionOK {
		t.Fatalf("connect after the slot freed got %v, want connection.ok", first)
	}
}

func TestLostLeaseClosesSocketsAndStartsANewEpoch(t *testing.T) {
	h := newHarnessWith(t, Config{LeaseTTL: 500 * time.Millisecond, LeaseInterval: 50 * time.Millisecond})
	ws, _ := h.dial("ann", userToken(t, "ann"), testKey, nil)
	ctx := context.Background()
	e, err := h.gw.st.Nodes.Get(ctx, "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	var l model.Lease
	_ = json.Unmarshal(e.Value(), &l)
	// A worker decided the node was dead (say, it was cut off from NATS).
	l.Expired = true
	b, _ := json.Marshal(l)
	if _, err := h.gw.st.Nodes.Update(ctx, "gw-test", b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	if code := waitClose(t, ws, 5*time.Second); code != websocket.StatusServiceRestart {
		t.Fatalf("close %v, want 1012 so the SDK reconnects", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, err := h.gw.st.Nodes.Get(ctx, "gw-test")
		if err == nil {
			var now model.Lease
			_ = json.Unmarshal(e.Value(), &now)
			if now.Epoch > l.Epoch+1 && !now.Expired {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no new epoch after the lease was lost")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	if _, first := h.dial("ann", userToken(t, "ann"), testKey, nil); first["type"] != "connection.ok" {
		t.Fatalf("connect after new epoch: %v", first)
	}
}

func TestDrainClosesWith1012AndPublishesGrace(t *testing.T) {
	h := newHarnessWith(t, Config{DrainWindow: 200 * time.Millisecond, DrainGrace: 3 * time.Second})
	var socks []*websocket.Conn
	for _, u := range []string{"ann", "bob", "cat"} {
		ws, _ := h.dial(u, userToken(t, u), testKey, nil)
		socks = append(socks, ws)
	}
	resp, err := http.Get(strings.Replace(strings.Replace(h.url, "ws", "http", 1), "/connect", "/readyz", 1))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz before drain: %v %v", resp, err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	codes := make(chan websocket.StatusCode, len(socks))
	for _, ws := range socks {
		go func() { codes <- waitClose(t, ws, 5*time.Second) }()
	}
	h.markClosed()
	h.gw.Close()
	for range socks {
		if code := <-codes; code != websocket.StatusServiceRestart {
			t.Fatalf("close %v, want 1012", code)
		}
	}
	for _, ev := range h.inputEvents(6)[3:] {
		if ev.Kind != connevent.Closed || ev.Grace != 3*time.Second {
			t.Fatalf("drain published %+v, want closed with the drain grace", ev)
		}
	}
}

// TestAConnectWaitsForAFreeSlot: past ConnectInFlight a connect waits (up to
// ConnectWait) and is admitted when a slot frees, rather than being sent
// into the SDK's backoff.
func TestAConnectWaitsForAFreeSlot(t *testing.T) {
	h := newHarnessWith(t, Config{ConnectInFlight: 1, ConnectWait: time.Minute})
	h.gw.admitting <- struct{}{} // a connect under way
	answered := make(chan map[string]any, 1)
	go func() {
		_, first := h.dial("ann", userToken(t, "ann"), testKey, nil)
		answered <- first
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.gw.connectsWaiting.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the connect never waited for a slot")
		}
		time.Sleep(5 * time.Millisecond) // polling the waiting count
	}
	select {
	case first := <-answered:
		t.Fatalf("connect answered %v while every slot was taken", first)
	default:
	}
	<-h.gw.admitting // the connect under way ends
	select {
	case first := <-answered:
		if first["type"] != event.ConnectionOK {
			t.Fatalf("connect got %v once a slot freed, want connection.ok", first)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connect was not admitted when a slot freed")
	}
}

// TestASlowReaderIsClosedAndOthersKeepUp: a connection that stops reading
// while events for it pile up is closed (its close reaches the workers like
// any other), and a watcher of the same user next to it gets every event,
// in order, without waiting for it.
func TestASlowReaderIsClosedAndOthersKeepUp(t *testing.T) {
	h := newHarnessWith(t, Config{SendQueue: 16})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watchAnnOn := func(user string) (*websocket.Conn, string) {
		ws, first := h.dial(user, userToken(t, user), testKey, nil)
		id := first["connection_id"].(string)
		if err := watch.Send(ctx, h.nc, watch.Request{ConnID: id, UserID: user, Users: []string{"ann"}}); err != nil {
			t.Fatal(err)
		}
		return ws, id
	}
	began := time.Now()
	fast, _ := watchAnnOn("fast")
	_, deafID := watchAnnOn("deaf") // never read again

	// Events big enough to fill the deaf socket's buffers (kernel ones
	// included) several times over, sent no faster than the fast watcher
	// reads: at most a window of them ahead, well inside its queue.
	const n, window = 1200, 8
	bio := strings.Repeat("x", 20<<10)
	read := make(chan struct{}, n)
	go func() {
		for v := uint64(1); v <= n; v++ {
			if v > window {
				select {
				case <-read:
				case <-ctx.Done():
					return
				}
			}
			ev := event.Event{Type: event.PresenceChanged, User: map[string]any{"id": "ann", "online": v%2 == 1, "bio": bio}}
			if err := event.Publish(h.nc, event.Meta{User: "ann", Stream: event.StreamPresence, Version: v}, ev.Encode()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for want := 1; want <= n; {
		_, b, err := fast.Read(ctx)
		if err != nil {
			t.Fatalf("the fast watcher after %d of %d events: %v", want-1, n, err)
		}
		var f struct {
			Type string `json:"type"`
			User struct {
				Online bool `json:"online"`
			} `json:"user"`
		}
		if json.Unmarshal(b, &f) != nil || f.Type != event.PresenceChanged {
			continue
		}
		if f.User.Online != (want%2 == 1) {
			t.Fatalf("event %d out of order", want)
		}
		want++
		read <- struct{}{}
	}

	t.Logf("the fast watcher got all %d events after %v", n, time.Since(began))
	// The deaf connection was closed: the gateway published its close.
	cons, err := h.js.OrderedConsumer(ctx, store.StreamInput, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.ConnEventsAll}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("no close of the slow reader's connection: %v", err)
		}
		if ev, err := connevent.Decode(msg.Data()); err == nil && ev.ConnID == deafID && ev.Kind == connevent.Closed {
			return
		}
	}
}
