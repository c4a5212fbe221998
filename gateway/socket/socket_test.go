package socket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// recorder is a Handler keeping what its socket received.
type recorder struct {
	c      *Conn
	mu     sync.Mutex
	msgs   []string
	closed chan struct{}
	echo   bool
	// refused counts echoes Send would not queue.
	refused int
}

func (r *recorder) Message(b []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, string(b))
	r.mu.Unlock()
	if r.echo && r.c.Send(bytes.Clone(b)) != nil {
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
	}
}

func (r *recorder) Closed() { close(r.closed) }

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// testServer serves sockets on an httptest server; each accepted socket's
// recorder arrives on accepted.
type testServer struct {
	s        *Server
	url      string
	accepted chan *recorder
}

func newTestServer(t *testing.T, opts Options, echo bool) *testServer {
	t.Helper()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{s: s, accepted: make(chan *recorder, 1024)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Upgrade(w, r)
		if err != nil {
			return
		}
		rec := &recorder{c: c, closed: make(chan struct{}), echo: echo}
		c.Start(rec)
		ts.accepted <- rec
	}))
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	ts.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return ts
}

func (ts *testServer) dial(t *testing.T) (*websocket.Conn, *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	select {
	case rec := <-ts.accepted:
		return ws, rec
	case <-ctx.Done():
		t.Fatal("the server never accepted the socket")
		return nil, nil
	}
}

func waitClosed(t *testing.T, rec *recorder, within time.Duration) {
	t.Helper()
	select {
	case <-rec.closed:
	case <-time.After(within):
		t.Fatalf("socket not closed within %v", within)
	}
}

func TestMessagesRoundTripInOrder(t *testing.T) {
	const n = 500
	// Room for every echo: the reader may run ahead of the writer.
	ts := newTestServer(t, Options{QueueLimit: n}, true)
	ws, rec := ts.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		for i := range n {
			_ = ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "m%d", i))
		}
	}()
	for i := range n {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if want := fmt.Sprintf("m%d", i); string(b) != want {
			rec.mu.Lock()
			t.Logf("%d echoes refused", rec.refused)
			rec.mu.Unlock()
			t.Fatalf("message %d is %q, want %q", i, b, want)
		}
	}
	if got := rec.messages(); len(got) != n {
		t.Fatalf("server got %d messages, want %d", len(got), n)
	}
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("client close: %v (the server must answer the closing handshake)", err)
	}
	waitClosed(t, rec, 5*time.Second)
	if ts.s.Len() != 0 {
		t.Fatalf("%d sockets still held after the close", ts.s.Len())
	}
}

func TestServerCloseSendsItsCode(t *testing.T) {
	ts := newTestServer(t, Options{}, false)
	ws, rec := ts.dial(t)
	if err := rec.c.Send([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	rec.c.Close(StatusServiceRestart, "restarting")
	if err := rec.c.Send([]byte("too late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil || string(b) != "last words" {
		t.Fatalf("read %q, %v: want what was queued before the close", b, err)
	}
	_, _, err = ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusServiceRestart {
		t.Fatalf("closed with %v (%v), want 1012", code, err)
	}
	// The client answered the handshake (coder/websocket does while reading).
	waitClosed(t, rec, 5*time.Second)
	wantEnding(t, rec, StatusServiceRestart, false)
}

func TestClientCloseEndsTheSocketByTheClient(t *testing.T) {
	ts := newTestServer(t, Options{}, false)
	ws, rec := ts.dial(t)
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, rec, 5*time.Second)
	wantEnding(t, rec, StatusNormal, true)

	// One that goes away without a close frame.
	raw := dialRaw(t, ts.url)
	rec = <-ts.accepted
	raw.nc.Close()
	waitClosed(t, rec, 5*time.Second)
	wantEnding(t, rec, StatusAbnormal, true)
}

// wantEnding checks how the socket ended, as the gateway's metrics read it.
func wantEnding(t *testing.T, rec *recorder, code StatusCode, byClient bool) {
	t.Helper()
	if c, by := rec.c.Ending(); c != code || by != byClient {
		t.Fatalf("Ending() = %d, by client %v; want %d, by client %v", c, by, code, byClient)
	}
}

func TestUnansweredPingAbortsTheSocket(t *testing.T) {
	ts := newTestServer(t, Options{PingInterval: 50 * time.Millisecond, PingTimeout: 100 * time.Millisecond}, false)
	raw := dialRaw(t, ts.url)
	rec := <-ts.accepted
	began := time.Now()
	waitClosed(t, rec, 5*time.Second)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("silent client dropped after %v, want about interval + timeout", took)
	}
	wantEnding(t, rec, StatusGoingAway, false)
	_ = raw
}

func TestAnsweredPingsKeepTheSocketOpen(t *testing.T) {
	// A pong has half a second: a busy machine (the race detector, a
	// parallel build) can hold one up for tens of milliseconds.
	ts := newTestServer(t, Options{PingInterval: 20 * time.Millisecond, PingTimeout: 500 * time.Millisecond}, true)
	ws, rec := ts.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Reading answers pings; three ping timeouts pass with messages going
	// both ways (a socket whose pongs did not count would be gone by then).
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := ws.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatalf("socket closed while answering pings: %v", err)
		}
	}
	select {
	case <-rec.closed:
		t.Fatal("the server closed a socket that answered its pings")
	default:
	}
}

func TestIdleSocketIsClosedWith1001(t *testing.T) {
	ts := newTestServer(t, Options{IdleTimeout: 100 * time.Millisecond}, false)
	ws, rec := ts.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Fatalf("idle socket closed with %v (%v), want 1001", code, err)
	}
	waitClosed(t, rec, 5*time.Second)
	wantEnding(t, rec, StatusGoingAway, false)
}

func TestFragmentedMessageIsReassembled(t *testing.T) {
	ts := newTestServer(t, Options{}, false)
	raw := dialRaw(t, ts.url)
	rec := <-ts.accepted
	// A ping between the fragments, as §5.4 allows; each frame written in
	// pieces so the reader sees partial headers and payloads.
	for _, f := range [][]byte{
		clientFrame(false, opText, []byte("hel")),
		clientFrame(true, opPing, []byte("p")),
		clientFrame(false, opContinuation, []byte("lo ")),
		clientFrame(true, opContinuation, []byte("world")),
		clientFrame(true, opText, []byte("second")),
	} {
		for _, b := range f {
			raw.write(t, []byte{b})
		}
	}
	waitFor(t, func() bool { return len(rec.messages()) == 2 })
	if got := rec.messages(); got[0] != "hello world" || got[1] != "second" {
		t.Fatalf("messages %q, want [hello world second]", got)
	}
	if op, payload := raw.read(t); op != opPong || string(payload) != "p" {
		t.Fatalf("got frame %x %q, want the pong", op, payload)
	}
}

func TestRefusedFramesCloseWithTheirCode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		code  StatusCode
	}{
		{"too big", clientFrame(true, opText, bytes.Repeat([]byte("x"), 5000)), StatusTooBig},
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, StatusProtocolError},
		{"reserved bits", append([]byte{0xC1}, clientFrame(true, opText, []byte("hi"))[1:]...), StatusProtocolError},
		{"unknown opcode", clientFrame(true, 0x3, []byte("hi")), StatusProtocolError},
		{"continuation first", clientFrame(true, opContinuation, []byte("hi")), StatusProtocolError},
		{"fragmented ping", clientFrame(false, opPing, nil), StatusProtocolError},
		{"invalid UTF-8", clientFrame(true, opText, []byte{0xff, 0xfe}), StatusInvalidData},
		{"close code a client may not send", clientFrame(true, opClose, []byte{0x03, 0xED}), StatusProtocolError},
		{"one-byte close", clientFrame(true, opClose, []byte{0x03}), StatusProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, Options{}, false)
			raw := dialRaw(t, ts.url)
			rec := <-ts.accepted
			raw.write(t, tc.frame)
			op, payload := raw.read(t)
			if code, _ := parseClose(payload); op != opClose || code != tc.code {
				t.Fatalf("got frame %x %q, want close %d", op, payload, tc.code)
			}
			// The server ends its side after the close frame (a FIN, so the
			// frame is not lost to a reset) and drops whatever else comes.
			raw.write(t, clientFrame(true, opText, []byte("ignored")))
			_ = raw.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := raw.br.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the close frame read %d bytes, %v; want EOF", n, err)
			}
			raw.nc.Close()
			waitClosed(t, rec, 5*time.Second)
			wantEnding(t, rec, tc.code, false)
			if len(rec.messages()) != 0 {
				t.Fatalf("a refused frame was delivered: %q", rec.messages())
			}
		})
	}
}

func TestSlowReaderIsReportedBehind(t *testing.T) {
	ts := newTestServer(t, Options{QueueLimit: 4, WriteTimeout: 5 * time.Second}, false)
	raw := dialRaw(t, ts.url) // never reads
	rec := <-ts.accepted
	big := bytes.Repeat([]byte("x"), 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rec.c.Send(big)
		if errors.Is(err, ErrBehind) {
			break
		}
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("a client that never reads was never reported behind")
		}
	}
	rec.c.Abort()
	waitClosed(t, rec, 5*time.Second)
	_ = raw
}

func TestPlainHTTPRequestIsRefused(t *testing.T) {
	ts := newTestServer(t, Options{}, false)
	resp, err := http.Get("http" + strings.TrimPrefix(ts.url, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET answered %d, want 426", resp.StatusCode)
	}
}

func TestManySocketsLeaveNothingBehind(t *testing.T) {
	ts := newTestServer(t, Options{}, true)
	before := runtime.NumGoroutine()
	const n = 200
	var wg sync.WaitGroup
	recs := make([]*recorder, n)
	socks := make([]*websocket.Conn, n)
	for i := range n {
		socks[i], recs[i] = ts.dial(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, ws := range socks {
		wg.Go(func() {
			msg := fmt.Appendf(nil, "from %d", i)
			if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
				t.Error(err)
				return
			}
			if _, b, err := ws.Read(ctx); err != nil || !bytes.Equal(b, msg) {
				t.Errorf("socket %d read %q, %v", i, b, err)
			}
			_ = ws.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	for _, rec := range recs {
		waitClosed(t, rec, 5*time.Second)
	}
	waitFor(t, func() bool { return ts.s.Len() == 0 && runtime.NumGoroutine() <= before })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond) // polling the condition
	}
}

// rawClient speaks WebSocket frames by hand, to send what a well-behaved
// client library never would.
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawClient {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake answered %d %v", resp.StatusCode, resp.Header)
	}
	return &rawClient{nc: nc, br: br}
}

func (r *rawClient) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// read reads one server frame (unmasked, not fragmented).
func (r *rawClient) read(t *testing.T) (byte, []byte) {
	t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		t.Fatal(err)
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r.br, payload); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0F, payload
}

// clientFrame encodes a masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	masked := bytes.Clone(payload)
	unmask(masked, mask)
	return append(b, masked...)
}

func TestClosedServerRefusesUpgradesAndClosesOnce(t *testing.T) {
	ts := newTestServer(t, Options{}, false)
	_, rec := ts.dial(t)
	ts.s.Close()
	ts.s.Close() // a second Close does nothing
	waitClosed(t, rec, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ws, _, err := websocket.Dial(ctx, ts.url, nil); err == nil {
		_, _, err = ws.Read(ctx)
		if err == nil {
			t.Fatal("a closed server kept a new socket open")
		}
	}
	if ts.s.Len() != 0 {
		t.Fatalf("a closed server holds %d sockets", ts.s.Len())
	}
}

func TestAFloodOfFramesIsClosedWith1008(t *testing.T) {
	ts := newTestServer(t, Options{FrameRate: 20, FrameBurst: 50}, false)
	raw := dialRaw(t, ts.url)
	rec := <-ts.accepted
	// 10,000 health checks written at once: far past 20 a second.
	const n = 10000
	hc := clientFrame(true, opText, []byte(`[{"type":"health.check","client_id":"x"}]`))
	flood := bytes.Repeat(hc, n)
	go func() { _, _ = raw.nc.Write(flood) }() // fails once the server is gone
	began := time.Now()
	op, payload := raw.read(t)
	if code, _ := parseClose(payload); op != opClose || code != StatusPolicyViolation {
		t.Fatalf("got frame %x %q, want close 1008", op, payload)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("the flood was closed after %v, want at once", took)
	}
	raw.nc.Close()
	waitClosed(t, rec, 5*time.Second)
	if got := len(rec.messages()); got > 100 {
		t.Fatalf("%d of the flood's %d messages were delivered, want the burst (50) and little more", got, n)
	}
}

func TestFrameRateBoundsASustainedRateNotAPace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		every  time.Duration
		sent   int
		closed bool // after about 26 frames
	}{
		{"a health check every 300 ms is never closed", 300 * time.Millisecond, 40, false},
		{"a frame every 50 ms, exactly the rate, is never closed", 50 * time.Millisecond, 40, false},
		{"25 frames a second are closed once the burst is spent", 40 * time.Millisecond, 40, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(time.Unix(1000, 0).UnixNano())
			ts := newTestServer(t, Options{FrameRate: 20, FrameBurst: 5, now: func() time.Time { return time.Unix(0, clock.Load()) }}, false)
			raw := dialRaw(t, ts.url)
			rec := <-ts.accepted
			// The server writes nothing but its close frame to this client:
			// the first byte back is the socket being closed.
			gotClose := make(chan struct{})
			go func() {
				_, _ = raw.br.Peek(1)
				close(gotClose)
			}()
			closedAt := -1
			for i := range tc.sent {
				raw.write(t, clientFrame(true, opText, []byte(`[{"type":"health.check"}]`)))
				waitFor(t, func() bool {
					select {
					case <-gotClose:
						return true
					default:
						return len(rec.messages()) == i+1
					}
				})
				if len(rec.messages()) != i+1 {
					closedAt = i
					break
				}
				clock.Add(int64(tc.every))
			}
			if !tc.closed {
				if closedAt >= 0 {
					t.Fatalf("closed at frame %d of %d sent every %v", closedAt, tc.sent, tc.every)
				}
				return
			}
			// A burst of 5 spent at 0.2 tokens a frame: refused at the 26th.
			if closedAt < 20 || closedAt > 30 {
				t.Fatalf("refused frame %d, want about the 26th", closedAt)
			}
			if op, payload := raw.read(t); op != opClose || binary.BigEndian.Uint16(payload) != uint16(StatusPolicyViolation) {
				t.Fatalf("got frame %x %q, want close 1008", op, payload)
			}
		})
	}
}

// TestASocketOutlivesTheHTTPServersTimeouts: the HTTP server's read, write
// and idle timeouts bound the handshake request only; the socket it becomes
// lives on.
func TestASocketOutlivesTheHTTPServersTimeouts(t *testing.T) {
	s, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *recorder, 1)
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Upgrade(w, r)
		if err != nil {
			return
		}
		rec := &recorder{c: c, closed: make(chan struct{}), echo: true}
		c.Start(rec)
		accepted <- rec
	}))
	const timeout = 50 * time.Millisecond
	hs.Config.ReadHeaderTimeout, hs.Config.ReadTimeout, hs.Config.WriteTimeout, hs.Config.IdleTimeout = timeout, timeout, timeout, timeout
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	rec := <-accepted
	// Messages both ways over ten times the timeouts.
	for end := time.Now().Add(10 * timeout); time.Now().Before(end); {
		if err := ws.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatalf("write after %v: %v", 10*timeout, err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatalf("the socket died under the HTTP server's timeouts: %v", err)
		}
	}
	select {
	case <-rec.closed:
		t.Fatal("the socket closed")
	default:
	}
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
}
