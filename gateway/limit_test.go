package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

func TestAClientFloodingFramesIsClosedWith1008(t *testing.T) {
	h := newHarness(t) // the default frame rate: 20/s, bursts of 50
	ws, _ := h.dial("ann", userToken(t, "ann"), testKey, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		hc := []byte(`[{"type":"health.check","client_id":"x"}]`)
		for range 10000 {
			if ws.Write(ctx, websocket.MessageText, hc) != nil {
				return // closed under it
			}
		}
	})
	code := waitClose(t, ws, 5*time.Second)
	wg.Wait()
	if code != websocket.StatusPolicyViolation {
		t.Fatalf("a client flooding health checks was closed with %v, want 1008", code)
	}
}

// TestWhatIsNotAHealthCheckIsIgnored: clients send health checks only;
// anything else gets no answer and does not close the socket.
func TestWhatIsNotAHealthCheckIsIgnored(t *testing.T) {
	h := newHarness(t)
	ws, _ := h.dial("ann", userToken(t, "ann"), testKey, nil)
	if hc := readFrame(t, ws); hc["type"] != event.HealthCheck {
		t.Fatalf("second frame %v, want the health check after connection.ok", hc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, msg := range []string{
		`{"type":"message.new","text":"hi"}`, `[{"type":"typing.start"}]`, `[]`, `not json`, `{"type":"health.check"`,
		`[{"type":"health.check","client_id":"x"}]`,
	} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if f := readFrame(t, ws); f["type"] != event.HealthCheck || f["connection_id"] == nil {
		t.Fatalf("first answer %v, want the health check's (nothing for what came before it)", f)
	}
}

func TestAddrLimitBoundsEachAddressOnItsOwn(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAddrLimit(1, 2)
	l.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8")
	for i, want := range []bool{true, true, false} {
		if got := l.allow(a); got != want {
			t.Fatalf("connect %d from %s allowed = %v, want %v (burst 2)", i, a, got, want)
		}
	}
	if !l.allow(b) {
		t.Fatalf("%s refused while only %s was past its burst", b, a)
	}
	now = now.Add(time.Second)
	if !l.allow(a) || l.allow(a) {
		t.Fatal("a second later, want exactly one more connect from the address")
	}
	// One host picks any address of its IPv6 /64: they share a bucket.
	v6 := netip.MustParseAddr("2001:db8:1:2::1")
	l.allow(v6)
	l.allow(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	if l.allow(netip.MustParseAddr("2001:db8:1:2:abcd::1")) {
		t.Fatal("a third address of one /64 was allowed past the burst of 2")
	}
	if !l.allow(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatal("the next /64 was refused")
	}
}

func TestAddrLimitHoldsAFlooderAcrossGenerations(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAddrLimit(1, 2) // buckets turn every 2 s
	l.now = func() time.Time { return now }
	a := netip.MustParseAddr("203.0.113.7")
	allowed := 0
	for range 100 { // 10 a second for 10 s
		if l.allow(a) {
			allowed++
		}
		now = now.Add(100 * time.Millisecond)
	}
	// The burst and one a second; a bucket lost at a turn would give a
	// new burst of 2 at each of the five.
	if allowed < 11 || allowed > 12 {
		t.Fatalf("a flooder got %d connects in 10 s at 1/s with bursts of 2, want 11 or 12", allowed)
	}
}

func TestAddrLimitForgetsIdleAddressesAndTracksAtMostMax(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAddrLimit(1, 1) // buckets turn every second
	l.now = func() time.Time { return now }
	l.max = 3
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	for i := range 10 {
		l.allow(addr(i))
	}
	if n := l.tracked(); n != 3 {
		t.Fatalf("tracks %d addresses, want at most 3", n)
	}
	// Past the cap an address is not limited on its own (the node's rate
	// is): the tenth gets in again and again.
	if !l.allow(addr(9)) || !l.allow(addr(9)) {
		t.Fatal("an untracked address was refused")
	}
	if l.allow(addr(0)) {
		t.Fatal("a tracked address past its burst was allowed")
	}
	now = now.Add(1500 * time.Millisecond) // a turn: the buckets move to prev
	l.allow(addr(0))
	if n := l.tracked(); n != 3 {
		t.Fatalf("after one turn tracks %d, want the 3 of before", n)
	}
	now = now.Add(2500 * time.Millisecond) // idle two periods: all forgotten
	l.allow(addr(5))
	if n := l.tracked(); n != 1 {
		t.Fatalf("after two idle periods tracks %d addresses, want only the new one", n)
	}
}

func TestClientAddrBelievesForwardedForOnlyFromTrustedProxies(t *testing.T) {
	trusted, err := parseProxies("10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer, xff, want string
	}{
		{"a direct client is its peer address", "198.51.100.1:5000", "", "198.51.100.1"},
		{"a direct client's X-Forwarded-For is ignored", "198.51.100.1:5000", "203.0.113.9", "198.51.100.1"},
		{"behind a trusted proxy the client is the address it appended", "10.1.2.3:5000", "203.0.113.9", "203.0.113.9"},
		{"what the client wrote itself is not believed", "10.1.2.3:5000", "192.0.2.66, 203.0.113.9", "203.0.113.9"},
		{"a chain of trusted proxies is walked", "127.0.0.1:5000", "203.0.113.9, 10.9.9.9", "203.0.113.9"},
		{"a trusted proxy with no header is the client", "10.1.2.3:5000", "", "10.1.2.3"},
		{"garbage stops the walk at the last address believed", "10.1.2.3:5000", "203.0.113.9, nonsense, 10.9.9.9", "10.9.9.9"},
		{"an IPv4-mapped peer is its IPv4 address", "[::ffff:198.51.100.1]:5000", "", "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/connect", nil)
			r.RemoteAddr = tc.peer
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			got, ok := clientAddr(r, trusted)
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("client of peer %s with X-Forwarded-For %q = %v, %v; want %s", tc.peer, tc.xff, got, ok, tc.want)
			}
		})
	}
	if _, err := parseProxies("10.0.0.0/8,lb.internal"); err == nil {
		t.Fatal("a host name was accepted as a trusted proxy")
	}
}

// dialFrom connects like the SDK through a proxy that says the client is
// xff ("": no header) and returns the socket and its first frame.
func (h *harness) dialFrom(user, xff string) (*websocket.Conn, map[string]any) {
	h.t.Helper()
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}})
	q := url.Values{"json": {string(payload)}, "api_key": {testKey}, "authorization": {userToken(h.t, user)}}
	hdr := http.Header{}
	if xff != "" {
		hdr.Set("X-Forwarded-For", xff)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, h.url+"?"+q.Encode(), &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { ws.CloseNow() })
	return ws, readFrame(h.t, ws)
}

func TestConnectsFromOneAddressAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted string
		// the connects in turn: the X-Forwarded-For each comes with, and
		// whether it is let in.
		xff []string
		in  []bool
	}{
		{"the third connect from one address is refused", "", []string{"", "", ""}, []bool{true, true, false}},
		{"X-Forwarded-For is not believed when no proxy is trusted", "", []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"}, []bool{true, true, false}},
		{"behind a trusted proxy each client has its own limit", "127.0.0.1/32,::1/128",
			[]string{"203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2", ""}, []bool{true, true, false, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessWith(t, Config{ConnectRatePerIP: 0.001, ConnectBurstPerIP: 2, TrustedProxies: tc.trusted})
			for i, xff := range tc.xff {
				user := fmt.Sprintf("u%d", i)
				ws, first := h.dialFrom(user, xff)
				if tc.in[i] {
					if first["type"] != event.ConnectionOK {
						t.Fatalf("connect %d (X-Forwarded-For %q) got %v, want connection.ok", i, xff, first)
					}
					continue
				}
				e, _ := first["error"].(map[string]any)
				if e == nil || e["code"] != float64(9) || e["StatusCode"] != float64(429) {
					t.Fatalf("connect %d (X-Forwarded-For %q) got %v, want rate-limit code 9 status 429", i, xff, first)
				}
				if code := waitClose(t, ws, 5*time.Second); code != websocket.StatusTryAgainLater {
					t.Fatalf("close %v, want 1013 so the SDK retries", code)
				}
			}
		})
	}
}

func TestAnUnreadableTrustedProxyIsAnError(t *testing.T) {
	cfg := Config{APIKey: testKey, APISecret: testSecret, TrustedProxies: "10.0.0.0/8,lb"}
	if _, err := New(context.Background(), cfg, nil, nil); err == nil || !strings.Contains(err.Error(), `"lb"`) {
		t.Fatalf("New with trusted proxy %q = %v, want an error naming it", "lb", err)
	}
}

func TestHTTPServerTakesTheLargestConnectAndRefusesBloatedHeads(t *testing.T) {
	h := newHarness(t)
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewHTTPServer(h.gw.Handler())
	ts.Start()
	t.Cleanup(ts.Close)
	base := "ws" + strings.TrimPrefix(ts.URL, "http") + "/connect"

	// A json parameter at its bound, of the characters URL-escaping triples.
	details := map[string]any{"id": "ann", "bio": strings.Repeat(`"`, maxConnectJSON/2-40)}
	payload, _ := json.Marshal(map[string]any{"user_id": "ann", "user_details": details})
	if len(payload) > maxConnectJSON {
		t.Fatalf("test json is %d bytes, past the bound %d", len(payload), maxConnectJSON)
	}
	q := url.Values{"json": {string(payload)}, "api_key": {testKey}, "authorization": {userToken(t, "ann")}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, base+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatalf("a connect of %d bytes of URL was not taken: %v", len(q.Encode()), err)
	}
	defer ws.CloseNow()
	// (Its details are past the profile's own bound: answered, in the
	// SDK's error shape, by the gateway.)
	if f := readFrame(t, ws); f["error"] == nil && f["type"] != event.ConnectionOK {
		t.Fatalf("first frame %v, want the gateway's answer", f)
	}

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
	req.Header.Set("X-Bloat", strings.Repeat("x", 2*maxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a request head of %d KiB answered %d, want 431", 2*maxHeaderBytes>>10, resp.StatusCode)
	}
}

// A user holding MaxConnsPerUser connections (as the presence state the
// workers keep says) gets the SDK's code 71 for one more, and publishes
// nothing; one fewer lets the next in.
func TestConnectionsPerUserAreBounded(t *testing.T) {
	h := newHarnessWith(t, Config{MaxConnsPerUser: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := h.js.KeyValue(ctx, store.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	hold := func(n int) {
		p := model.Presence{Conns: map[string]model.Conn{}}
		for i := range n {
			p.Conns[fmt.Sprint("elsewhere-", i)] = model.Conn{Node: "gw-other", Epoch: 1, OpenedAt: time.Now()}
		}
		b, _ := json.Marshal(p)
		if _, err := kv.Put(ctx, store.Key("ann"), b); err != nil {
			t.Fatal(err)
		}
	}

	hold(3)
	ws, first := h.dial("ann", userToken(t, "ann"), testKey, nil)
	e, _ := first["error"].(map[string]any)
	if e == nil || e["code"] != float64(apierror.CodeTooManyConnections) {
		t.Fatalf("first frame = %v, want error code %d", first, apierror.CodeTooManyConnections)
	}
	ws.CloseNow()
	info, err := h.js.Stream(ctx, store.StreamInput)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := info.Info(ctx, jetstream.WithSubjectFilter(subject.ConnEventsAll))
	if n := len(st.State.Subjects); n != 0 {
		t.Fatalf("a refused connect published: %v", st.State.Subjects)
	}

	hold(2)
	if _, first := h.dial("ann", userToken(t, "ann"), testKey, nil); first["type"] != "connection.ok" {
		t.Fatalf("first frame = %v, want connection.ok with one connection to spare", first)
	}
}
