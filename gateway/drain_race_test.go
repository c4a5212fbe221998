package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/natsserver"
)

func rawGateway(t *testing.T, node string) (*Gateway, string, func()) {
	t.Helper()
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gw, err := New(ctx, Config{APIKey: testKey, APISecret: testSecret, NodeName: node}, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	return gw, "ws" + strings.TrimPrefix(srv.URL, "http") + "/connect", srv.Close
}

func rawDial(t *testing.T, u, user string, extra ...any) (*websocket.Conn, map[string]any, error) {
	details := map[string]any{"id": user}
	if len(extra) == 1 {
		details["n"] = extra[0]
	}
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": details})
	tok := userToken(t, user)
	q := url.Values{"json": {string(payload)}, "api_key": {testKey}, "authorization": {tok}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u+"?"+q.Encode(), nil)
	if err != nil {
		return nil, nil, err
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, nil, err
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return ws, m, nil
}

// rawReadAll keeps reading (discarding data frames) so the client answers
// pings and the close handshake but never sends anything itself.
func rawReadAll(ws *websocket.Conn) {
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
}

// TestCloseDrainsAConnectAdmittedDuringTheDrain: admit checks g.draining
// early, then spends milliseconds (profile write, presence read, JetStream
// publish) before it registers the connection. A connect in that window is
// registered after Close took its snapshot, so Close never closes it and
// connWG.Wait blocks until the client leaves (the SDK pings every 25 s, so
// with a real client: forever; here the silent client is cut by the 70 s
// health timeout).
func TestCloseDrainsAConnectAdmittedDuringTheDrain(t *testing.T) {
	gw, u, stopHTTP := rawGateway(t, "gw-drain")
	defer stopHTTP()
	var (
		mu      sync.Mutex
		clients []*websocket.Conn
		closing atomic.Bool
		seq     atomic.Int64
		wg      sync.WaitGroup
	)
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !closing.Load() {
				// One hot user: every connect rewrites the same profile key, so the
				// compare-and-set retries widen the window between admit's
				// draining check and the registration.
				ws, first, err := rawDial(t, u, "hot", seq.Add(1))
				if err != nil {
					continue
				}
				if first["type"] != "connection.ok" {
					ws.CloseNow()
					continue
				}
				rawReadAll(ws) // answers pings and the close handshake, sends nothing
				mu.Lock()
				clients = append(clients, ws)
				mu.Unlock()
			}
		}()
	}
	// Let connects pile up, then drain in the middle of them.
	for deadline := time.Now().Add(10 * time.Second); gw.ConnCount() < 10; {
		if time.Now().After(deadline) {
			t.Fatal("clients did not connect")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	closing.Store(true)
	done := make(chan struct{})
	start := time.Now()
	go func() { gw.Close(); close(done) }()
	wg.Wait()
	hung := false
	select {
	case <-done:
		t.Logf("Close returned after %v", time.Since(start))
	case <-time.After(10 * time.Second):
		hung = true
	}
	mu.Lock()
	for _, ws := range clients {
		ws.CloseNow()
	}
	mu.Unlock()
	<-done
	t.Logf("clients admitted: %d", len(clients))
	if hung {
		t.Fatalf("Gateway.Close still blocked 10s after the drain began: a connection admitted during the drain was never closed (registered %d, open now %d)", len(clients), gw.ConnCount())
	}
}

// TestCloseDoesNotWaitOnDeadPeersOneByOne: Close calls c.close (a blocking
// WebSocket close handshake, up to 5 s per unresponsive peer) for each
// connection in turn, so the drain of N dead peers takes ~5·N seconds
// (100k sockets on a node: hours) and the orchestrator kills the node long
// before the "closed" events are published.
func TestCloseDoesNotWaitOnDeadPeersOneByOne(t *testing.T) {
	gw, u, stopHTTP := rawGateway(t, "gw-seq")
	defer stopHTTP()
	var raw []*websocket.Conn
	for i := 0; i < 3; i++ {
		ws, first, err := rawDial(t, u, fmt.Sprintf("dead%d", i))
		if err != nil || first["type"] != "connection.ok" {
			t.Fatalf("dial: %v %v", err, first)
		}
		// A peer that has gone away: it never reads again, so it never
		// answers the close frame.
		raw = append(raw, ws)
	}
	start := time.Now()
	gw.Close()
	took := time.Since(start)
	for _, ws := range raw {
		ws.CloseNow()
	}
	if took > 8*time.Second {
		t.Fatalf("Close took %v for 3 unresponsive sockets: they are closed sequentially (~5s each)", took.Round(time.Second))
	}
}
