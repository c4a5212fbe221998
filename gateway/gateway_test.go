package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/token"
	"github.com/presencehq/presence/pkg/watch"
)

const (
	testKey    = "key"
	testSecret = "secret"
)

type harness struct {
	// markClosed tells the cleanup the test closed the gateway itself.
	markClosed func()
	t          *testing.T
	ns         *server.Server
	nc         *nats.Conn
	js         jetstream.JetStream
	gw         *Gateway
	url        string
}

func newHarness(t *testing.T) *harness {
	return newHarnessWith(t, Config{})
}

// newHarnessWith starts a gateway with cfg (key, secret and node name filled
// in when empty) on its own embedded NATS server.
func newHarnessWith(t *testing.T, cfg Config) *harness {
	t.Helper()
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.APIKey == "" {
		cfg.APIKey, cfg.APISecret = testKey, testSecret
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "gw-test"
	}
	gw, err := New(ctx, cfg, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	closed := false
	t.Cleanup(func() {
		srv.Close()
		if !closed {
			gw.Close()
		}
	})
	js, _ := jetstream.New(nc)
	h := &harness{t: t, ns: ns, nc: nc, js: js, gw: gw, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/connect"}
	h.markClosed = func() { closed = true }
	return h
}

// dial connects like the SDK does and returns the socket and the first frame.
func (h *harness) dial(user, tok, apiKey string, details map[string]any) (*websocket.Conn, map[string]any) {
	h.t.Helper()
	if details == nil {
		details = map[string]any{"id": user}
	}
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": details, "client_request_id": "x"})
	q := url.Values{"json": {string(payload)}, "api_key": {apiKey}, "authorization": {tok}, "stream-auth-type": {"jwt"}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, h.url+"?"+q.Encode(), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { ws.CloseNow() })
	return ws, readFrame(h.t, ws)
}

func readFrame(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return m
}

func userToken(t *testing.T, user string) string {
	tok, err := token.ForUser(testSecret, user)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// inputEvents reads the worker's input stream.
func (h *harness) inputEvents(n int) []connevent.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, store.StreamInput, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"presence.in.conn.>"}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []connevent.Event
	for len(out) < n {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			h.t.Fatalf("got %d input events, want %d: %v", len(out), n, err)
		}
		ev, err := connevent.Decode(msg.Data())
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func TestConnectAnswersConnectionOKFirstThenHealthCheck(t *testing.T) {
	h := newHarness(t)
	ws, first := h.dial("ann", userToken(t, "ann"), testKey, map[string]any{"id": "ann", "status": "busy", "team_color": "red"})
	if first["type"] != "connection.ok" || first["connection_id"] == "" {
		t.Fatalf("first frame = %v, want connection.ok with a connection_id", first)
	}
	me, _ := first["me"].(map[string]any)
	if me["id"] != "ann" || me["status"] != "busy" || me["team_color"] != "red" || me["online"] != true {
		t.Fatalf("me = %v, want ann online with status busy and custom field", me)
	}
	if hc := readFrame(t, ws); hc["type"] != "health.check" {
		t.Fatalf("second frame = %v, want health.check", hc)
	}
	// The SDK's ping is an array; the answer carries the connection id.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`[{"type":"health.check","client_id":"c"}]`)); err != nil {
		t.Fatal(err)
	}
	if hc := readFrame(t, ws); hc["type"] != "health.check" || hc["connection_id"] != first["connection_id"] {
		t.Fatalf("ping answer = %v", hc)
	}
	if ev := h.inputEvents(1)[0]; ev.Kind != connevent.Opened || ev.User != "ann" || ev.ConnID != first["connection_id"] {
		t.Fatalf("published %+v, want opened of ann", ev)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	evs := h.inputEvents(2)
	if evs[1].Kind != connevent.Closed || evs[1].ConnID != evs[0].ConnID {
		t.Fatalf("after close published %+v, want closed of the same connection", evs[1])
	}
}

func TestMalformedConnectJSONIsRejectedWithInputError(t *testing.T) {
	h := newHarness(t)
	q := url.Values{"json": {`{"user_id": "ann", `}, "api_key": {testKey}, "authorization": {userToken(t, "ann")}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, h.url+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	first := readFrame(t, ws)
	if e, _ := first["error"].(map[string]any); e == nil || e["code"] != float64(4) || e["StatusCode"] != float64(400) {
		t.Fatalf("first frame = %v, want error code 4 status 400", first)
	}
}

func TestConnectRejections(t *testing.T) {
	expired, _ := token.Sign(testSecret, map[string]any{"user_id": "ann", "exp": time.Now().Add(-time.Hour).Unix()})
	forged, _ := token.ForUser("not-the-secret", "ann")
	tests := []struct {
		name   string
		user   string
		tok    string
		apiKey string
		code   float64
	}{
		{"wrong api key is code 2", "ann", "", "nope", 2},
		{"expired token is code 40", "ann", expired, testKey, 40},
		{"forged signature is code 43", "ann", forged, testKey, 43},
		{"garbage token is code 3", "ann", "garbage", testKey, 3},
		{"token of another user is code 3", "bob", "", testKey, 3},
		{"user id with a dot is bad input", "a.b", "", testKey, 4},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.tok
			if tok == "" {
				tok = userToken(t, "ann")
				if tt.user == "a.b" {
					tok = userToken(t, "a.b")
				}
			}
			ws, first := h.dial(tt.user, tok, tt.apiKey, nil)
			e, _ := first["error"].(map[string]any)
			if e == nil || e["code"] != tt.code {
				t.Fatalf("first frame = %v, want error code %v", first, tt.code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _, err := ws.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("close = %v, want 1000 so the SDK does not retry", err)
			}
		})
	}
	info, err := h.js.Stream(context.Background(), store.StreamInput)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := info.Info(context.Background())
	for subj := range st.State.Subjects {
		if strings.HasPrefix(subj, "presence.in.conn.") {
			t.Fatalf("a rejected connect published %s", subj)
		}
	}
}

// TestRelayDeliversOncePerConnection: a connection watching a user and two
// channels holding that user gets each transition once, in order (I2).
func TestRelayDeliversOncePerConnection(t *testing.T) {
	h := newHarness(t)
	ws, first := h.dial("watcher", userToken(t, "watcher"), testKey, nil)
	readFrame(t, ws) // health.check
	connID := first["connection_id"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := watch.Send(ctx, h.nc, watch.Request{ConnID: connID, UserID: "watcher", Users: []string{"ann"}, CIDs: []string{"messaging:a", "messaging:b"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Send(ctx, h.nc, watch.Request{ConnID: connID, UserID: "mallory", Users: []string{"ann"}}); err == nil {
		t.Fatal("another user registered a watch on this connection")
	}
	meta := event.Meta{User: "ann", Stream: event.StreamPresence, CIDs: []string{"messaging:a", "messaging:b", "messaging:c"}}
	send := func(v uint64, online bool) {
		meta.Version = v
		ev := event.Event{Type: event.PresenceChanged, User: map[string]any{"id": "ann", "online": online}}
		if err := event.Publish(h.nc, meta, ev.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	send(1, true)
	send(1, true) // redelivered duplicate
	send(2, false)
	send(1, true) // stale
	send(3, true)
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	got := readOnline(t, ws, 3)
	if want := []any{true, false, true}; !equal(got, want) {
		t.Fatalf("watcher got %v, want %v", got, want)
	}
	// Nothing more may arrive: a later marker event is the next frame.
	meta.User, meta.Version, meta.CIDs = "ann", 4, nil
	send(4, false)
	f := readFrame(t, ws)
	if f["type"] != event.PresenceChanged || f["user"].(map[string]any)["online"] != false {
		t.Fatalf("after the three transitions got %v, want only the marker", f)
	}
}

func equal(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLiveConnectionRefreshesLastActive(t *testing.T) {
	// 16 slots of 20ms: every connection refreshes within 320ms.
	h := newHarnessWith(t, Config{NodeName: "gw-active", ActiveInterval: 320 * time.Millisecond})
	_, first := h.dial("ann", userToken(t, "ann"), testKey, nil)
	evs := h.inputEvents(2)
	if evs[1].Kind != connevent.Active || evs[1].ConnID != first["connection_id"] {
		t.Fatalf("second input event = %+v, want an active refresh of the connection", evs[1])
	}
}

// TestEventWaitsForItsRacingPredecessor: two workers publish one user's
// consecutive events; the newer (naming its predecessor) arrives first. The
// gateway holds it until the predecessor comes, so the watcher sees both in
// order instead of the older being dropped as stale (I2). A predecessor that
// never comes only delays the event.
// watchAnn connects a watcher of ann and returns its socket and a way to
// publish ann's events with any version and predecessor.
func watchAnn(t *testing.T) (*websocket.Conn, func(v, prev uint64, online bool)) {
	t.Helper()
	h := newHarness(t)
	ws, first := h.dial("watcher", userToken(t, "watcher"), testKey, nil)
	readFrame(t, ws) // health.check
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := watch.Send(ctx, h.nc, watch.Request{ConnID: first["connection_id"].(string), UserID: "watcher", Users: []string{"ann"}}); err != nil {
		t.Fatal(err)
	}
	return ws, func(v, prev uint64, online bool) {
		ev := event.Event{Type: event.PresenceChanged, User: map[string]any{"id": "ann", "online": online}}
		if err := event.Publish(h.nc, event.Meta{User: "ann", Stream: event.StreamPresence, Version: v, Prev: prev}, ev.Encode()); err != nil {
			t.Fatal(err)
		}
	}
}

// readOnline reads the online value of the next n presence events on ws.
func readOnline(t *testing.T, ws *websocket.Conn, n int) []any {
	t.Helper()
	var got []any
	for len(got) < n {
		f := readFrame(t, ws)
		if f["type"] == event.PresenceChanged {
			got = append(got, f["user"].(map[string]any)["online"])
		}
	}
	return got
}

func TestEventWaitsForItsRacingPredecessor(t *testing.T) {
	ws, send := watchAnn(t)
	send(1, 0, true)
	send(3, 2, true)  // overtook its predecessor
	send(2, 1, false) // the predecessor, a moment later
	send(5, 4, false) // names a predecessor that never comes
	got := readOnline(t, ws, 4)
	if want := []any{true, false, true, false}; !equal(got, want) {
		t.Fatalf("watcher got %v, want %v", got, want)
	}
}

// TestHeldEventsAreDeliveredOldestFirst: two events wait for predecessors
// that never come, the newer one having arrived first; when the hold ends
// both are delivered, the older first (else it would be dropped as stale).
func TestHeldEventsAreDeliveredOldestFirst(t *testing.T) {
	ws, send := watchAnn(t)
	send(1, 0, true)
	send(4, 3, true)  // waits for 3
	send(3, 2, false) // waits for 2, which never comes
	got := readOnline(t, ws, 3)
	if want := []any{true, false, true}; !equal(got, want) {
		t.Fatalf("watcher got %v, want %v", got, want)
	}
}
