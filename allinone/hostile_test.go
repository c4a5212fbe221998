package allinone

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/token"
	"github.com/presencehq/presence/pkg/watch"
)

// TestHostileClientsDoNotHurtOthers runs misbehaving clients against a
// running Presence while well-behaved users keep connecting and leaving
// under a watcher's eyes: garbage, binary and oversized frames, a flood of
// health checks, sockets that never read, connects that stall mid-handshake,
// tokens of every wrong kind and queries built to be slow. The watcher must
// see every transition; the flooder and the oversized frame must be cut off;
// afterwards no goroutine or memory is left behind. (The connect→event
// latency under attack is measured by the benchmark, not asserted here.)
func TestHostileClientsDoNotHurtOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of attack; -short skips it")
	}
	// The limits a deployment runs with; the attackers come from addresses
	// of their own, named by X-Forwarded-For from a trusted proxy (the
	// good users connect from loopback itself).
	var d Config
	d.RegisterFlags(flag.NewFlagSet("presence", flag.ContinueOnError))
	p := startForTest(t, Config{
		ConnectRatePerIP: d.ConnectRatePerIP, ConnectBurstPerIP: d.ConnectBurstPerIP, TrustedProxies: "127.0.0.1",
		RateLimitUser: d.RateLimitUser, RateLimitAPIKey: d.RateLimitAPIKey,
	})
	nc, err := nats.Connect(p.NATSURLAs(natsauth.Admin))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	const goodUsers = 8
	var good []string
	for i := range goodUsers {
		good = append(good, fmt.Sprintf("good-%d", i))
	}
	events := watcher(t, p, nc, "watcher", good...)
	// Warm up every lazily started part, then take the baseline.
	cycle(t, p, events, "good-0")
	baseGoroutines, baseHeap := settle()

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var conns hostileConns
	attack := func(n int, f func(ctx context.Context, i int)) {
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); f(ctx, i) }()
		}
	}
	var flooderClosed, oversizedClosed, garbageClosed atomic.Int32
	attack(4, func(ctx context.Context, i int) { // health checks as fast as they go
		ws := dialHostile(t, p, fmt.Sprintf("flood-%d", i))
		if ws == nil {
			return
		}
		defer ws.CloseNow()
		closed := make(chan websocket.StatusCode, 1)
		go func() { closed <- websocket.CloseStatus(drainErr(ws)) }()
		hc := []byte(`{"type":"health.check","client_id":"flood"}`)
		for ctx.Err() == nil {
			if err := ws.Write(ctx, websocket.MessageText, hc); err != nil {
				break
			}
		}
		select {
		case code := <-closed:
			if code == websocket.StatusPolicyViolation {
				flooderClosed.Add(1)
			} else {
				t.Logf("a flooder was closed with %d, want 1008", code)
			}
		case <-ctx.Done():
		}
	})
	attack(2, func(ctx context.Context, i int) { // one frame far past the limit
		ws := dialHostile(t, p, fmt.Sprintf("big-%d", i))
		if ws == nil {
			return
		}
		defer ws.CloseNow()
		_ = ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 1<<20)))
		if code := closedWith(ctx, ws); code == websocket.StatusMessageTooBig {
			oversizedClosed.Add(1)
		}
	})
	attack(4, func(ctx context.Context, i int) { // garbage at a polite pace: ignored
		ws := dialHostile(t, p, fmt.Sprintf("garbage-%d", i))
		if ws == nil {
			return
		}
		defer ws.CloseNow()
		go drain(ws)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			typ, msg := websocket.MessageText, []byte(fmt.Sprintf(`{"type":"%d", "nested": [[[[{}]]]], "x": "%s"`, n, strings.Repeat("é", n%500)))
			if n%2 == 1 {
				typ, msg = websocket.MessageBinary, []byte{0, 1, 2, byte(n)}
			}
			if err := ws.Write(ctx, typ, msg); err != nil {
				if ctx.Err() == nil {
					garbageClosed.Add(1)
				}
				return
			}
		}
	})
	attack(40, func(ctx context.Context, i int) { // connected, watching, never reading
		conns.add(neverReads(t, p, nc, fmt.Sprintf("deaf-%d", i), good))
	})
	attack(40, func(ctx context.Context, i int) { // stuck mid-handshake
		c, err := net.Dial("tcp", strings.TrimPrefix(p.WSURL(), "ws://"))
		if err != nil {
			return
		}
		conns.add(c)
		_, _ = c.Write([]byte("GET /connect?api_key=" + p.cfg.APIKey + " HTTP/1.1\r\nHost: x\r\nUpgrade: websock"))
	})
	attack(2, func(ctx context.Context, i int) { // every wrong kind of token, again and again
		for n := 0; ctx.Err() == nil; n++ {
			badConnect(ctx, t, p, n)
		}
	})
	attack(2, func(ctx context.Context, i int) { // queries built to be slow
		for n := 0; ctx.Err() == nil; n++ {
			slowQuery(ctx, t, p, n)
		}
	})

	// Meanwhile every good user connects and leaves, and the watcher sees it.
	var took []time.Duration
	for range 3 {
		for _, u := range good {
			took = append(took, cycle(t, p, events, u))
		}
	}
	stop()
	wg.Wait()
	conns.closeAll()
	slices.Sort(took)
	t.Logf("connect→online event for the watcher under attack: median %v, slowest %v (%d cycles)", took[len(took)/2], took[len(took)-1], len(took))

	if n := flooderClosed.Load(); n != 4 {
		t.Errorf("%d of 4 flooders were cut off, want all", n)
	}
	if n := oversizedClosed.Load(); n != 2 {
		t.Errorf("%d of 2 oversized frames were answered with 1009, want all", n)
	}
	if n := garbageClosed.Load(); n != 0 {
		t.Errorf("%d polite garbage senders were closed, want none: what is not a health check is ignored", n)
	}

	// Nothing left behind: goroutines and heap back near the baseline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, heap := settle()
		if g <= baseGoroutines+20 && heap <= baseHeap+32<<20 {
			t.Logf("after: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)", g, baseGoroutines, heap>>10, baseHeap>>10)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("left behind: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)\n%s",
				g, baseGoroutines, heap>>10, baseHeap>>10, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(200 * time.Millisecond) // polling a condition with a deadline
	}
}

// cycle connects user, waits for the watcher to see it online, closes it
// and waits for offline; it returns how long online took to arrive.
func cycle(t *testing.T, p *Presence, events <-chan seen, user string) time.Duration {
	t.Helper()
	began := time.Now()
	ws := connectUser(t, p, user)
	expect(t, events, seen{user, true})
	took := time.Since(began)
	ws.Close(websocket.StatusNormalClosure, "")
	expect(t, events, seen{user, false})
	return took
}

func expect(t *testing.T, events <-chan seen, want seen) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case got := <-events:
			if got == want {
				return
			}
			t.Fatalf("the watcher saw %+v, want %+v next", got, want)
		case <-timeout:
			t.Fatalf("the watcher did not see %+v within 20s", want)
		}
	}
}

// settle collects garbage and returns the goroutine count and heap in use.
func settle() (int, uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}

func connectQuery(p *Presence, user, tok string) string {
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}})
	return url.Values{"json": {string(payload)}, "api_key": {p.cfg.APIKey}, "authorization": {tok}}.Encode()
}

// dialHostile connects user and reads its connection.ok; nil if refused.
func dialHostile(t *testing.T, p *Presence, user string) *websocket.Conn {
	tok, _ := token.ForUser(p.Secret, user)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, p.WSURL()+"/connect?"+connectQuery(p, user, tok), from(user))
	if err != nil {
		t.Errorf("dial %s: %v", user, err)
		return nil
	}
	ws.SetReadLimit(1 << 20)
	if _, _, err := ws.Read(ctx); err != nil {
		t.Errorf("%s: no connection.ok: %v", user, err)
		ws.CloseNow()
		return nil
	}
	return ws
}

// from names an attacker's own source address, by name.
func from(name string) *websocket.DialOptions {
	h := fnv.New32a()
	h.Write([]byte(name))
	n := h.Sum32()
	return &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)}}}
}

func drainErr(ws *websocket.Conn) error {
	for {
		if _, _, err := ws.Read(context.Background()); err != nil {
			return err
		}
	}
}

func drain(ws *websocket.Conn) {
	for {
		if _, _, err := ws.Read(context.Background()); err != nil {
			return
		}
	}
}

// closedWith reads until the server closes ws and returns its close code.
func closedWith(ctx context.Context, ws *websocket.Conn) websocket.StatusCode {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// neverReads completes a WebSocket handshake and the connect on a raw
// socket, has the connection watch users, and then never reads again.
func neverReads(t *testing.T, p *Presence, nc *nats.Conn, user string, watched []string) net.Conn {
	tok, _ := token.ForUser(p.Secret, user)
	c, err := net.Dial("tcp", strings.TrimPrefix(p.WSURL(), "ws://"))
	if err != nil {
		t.Errorf("dial: %v", err)
		return nil
	}
	req := "GET /connect?" + connectQuery(p, user, tok) + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"X-Forwarded-For: " + from(user).HTTPHeader.Get("X-Forwarded-For") + "\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Errorf("handshake: %v", err)
		return c
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("handshake: %v %v", resp, err)
		return c
	}
	// The first frame is connection.ok (unmasked, short header).
	hdr := make([]byte, 4)
	if _, err := r.Read(hdr[:2]); err != nil {
		t.Errorf("connection.ok: %v", err)
		return c
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		if _, err := r.Read(hdr[2:4]); err != nil {
			return c
		}
		n = int(hdr[2])<<8 | int(hdr[3])
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Errorf("connection.ok: %v", err)
		return c
	}
	var ok struct {
		ConnectionID string `json:"connection_id"`
	}
	if json.Unmarshal(body, &ok) != nil || ok.ConnectionID == "" {
		t.Errorf("connection.ok: %s", body)
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := watch.Send(ctx, nc, watch.Request{ConnID: ok.ConnectionID, UserID: user, Users: watched}); err != nil {
		t.Errorf("watch: %v", err)
	}
	return c
}

// badConnect tries one wrong kind of token (n picks which); every one must
// be answered with an error, never let in.
func badConnect(ctx context.Context, t *testing.T, p *Presence, n int) {
	user := fmt.Sprintf("bad-%d", n%50)
	good, _ := token.ForUser(p.Secret, user)
	forged, _ := token.ForUser("not-the-secret", user)
	toks := []string{
		"", "garbage", forged, strings.Repeat("a", 10000),
		"eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoieCJ9.", good[:len(good)-3] + "abc",
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, p.WSURL()+"/connect?"+connectQuery(p, user, toks[n%len(toks)]), from("bad-tokens"))
	if err != nil {
		return // refused at the handshake
	}
	defer ws.CloseNow()
	_, b, err := ws.Read(ctx)
	if err == nil && strings.Contains(string(b), "connection.ok") {
		t.Errorf("a bad token (%d) was let in", n%len(toks))
	}
}

// slowQuery sends a query built to be expensive: deep nesting, huge $in
// lists, many $autocomplete terms. Each must be answered (any status).
func slowQuery(ctx context.Context, t *testing.T, p *Presence, n int) {
	var f any
	switch n % 3 {
	case 0:
		f = map[string]any{"name": map[string]any{"$autocomplete": "a"}}
		for range 40 {
			f = map[string]any{"$or": []any{f, map[string]any{"id": map[string]any{"$gt": "a"}}}}
		}
	case 1:
		ids := make([]any, 5000)
		for i := range ids {
			ids[i] = fmt.Sprint("u", i)
		}
		f = map[string]any{"id": map[string]any{"$in": ids}}
	case 2:
		var terms []any
		for i := range 200 {
			terms = append(terms, map[string]any{"name": map[string]any{"$autocomplete": fmt.Sprint(i)}})
		}
		f = map[string]any{"$or": terms}
	}
	q, _ := json.Marshal(map[string]any{"filter_conditions": f, "sort": []any{map[string]any{"field": "last_active", "direction": -1}}})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.HTTPURL()+"/users?api_key="+p.cfg.APIKey+"&payload="+url.QueryEscape(string(q)), nil)
	tok, _ := token.ForServer(p.Secret)
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			t.Errorf("a slow query got no answer: %v", err)
		}
		return
	}
	resp.Body.Close()
}

// hostileConns are raw sockets the test closes at the end.
type hostileConns struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (h *hostileConns) add(c net.Conn) net.Conn {
	if c != nil {
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
	}
	return c
}

func (h *hostileConns) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}
