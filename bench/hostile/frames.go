package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/pkg/token"
)

// Flood connects name and sends health checks as fast as its socket takes
// them. The server must close it with 1008 (its client-frame-rate); cut
// off, it comes back and floods again.
func Flood(ctx context.Context, t Target, name string) Outcome {
	o := newOutcome(KindFlood, name)
	hc := []byte(`{"type":"health.check","client_id":"` + name + `"}`)
	for {
		if ws, err := t.open(ctx, name); err != nil {
			o.fail(ctx, err)
		} else {
			o.Sockets++
			ended := readAll(ws)
			for ctx.Err() == nil && ws.Write(ctx, websocket.MessageText, hc) == nil {
				o.Sent++
			}
			o.closed(ctx, hangUp(ctx, ws, ended))
		}
		if !pause(ctx, comeBack) {
			return o
		}
	}
}

// Oversized connects name and sends one text frame of a MiB, far past the
// server's limit on what a client sends. The server must close it with
// 1009; it comes back and does it again.
func Oversized(ctx context.Context, t Target, name string) Outcome {
	o := newOutcome(KindOversized, name)
	big := []byte(strings.Repeat("x", 1<<20))
	for {
		if ws, err := t.open(ctx, name); err != nil {
			o.fail(ctx, err)
		} else {
			o.Sockets++
			// Written whole before the close is read: the server stops
			// reading at the frame's header, and its close frame waits in
			// our receive buffer.
			if ws.Write(ctx, websocket.MessageText, big) == nil {
				o.Sent++
			}
			o.closed(ctx, hangUp(ctx, ws, readAll(ws)))
		}
		if !pause(ctx, comeBack) {
			return o
		}
	}
}

// Garbage connects name and sends, ten times a second, alternately text
// that is not an event (and not JSON) and binary frames. That pace is
// within the frame rate, and what is not a health check goes unanswered:
// the server must leave it alone. Closed anyway, it comes back.
func Garbage(ctx context.Context, t Target, name string) Outcome {
	o := newOutcome(KindGarbage, name)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ws, err := t.open(ctx, name); err != nil {
			o.fail(ctx, err)
		} else {
			o.Sockets++
			o.closed(ctx, sendGarbage(ctx, ws, tick.C, &o.Sent))
		}
		if !pause(ctx, comeBack) {
			return o
		}
	}
}

// sendGarbage writes garbage on every tick until ws or ctx ends, and
// returns how ws ended.
func sendGarbage(ctx context.Context, ws *websocket.Conn, tick <-chan time.Time, sent *int) websocket.StatusCode {
	ended := readAll(ws)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return hangUp(ctx, ws, ended)
		case code := <-ended:
			ws.CloseNow()
			return code
		case <-tick:
		}
		typ, msg := websocket.MessageText, fmt.Appendf(nil, `{"type":"%d", "nested": [[[[{}]]]], "x": "%s"`, n, strings.Repeat("é", n%500))
		if n%2 == 1 {
			typ, msg = websocket.MessageBinary, []byte{0, 1, 2, byte(n)}
		}
		if err := ws.Write(ctx, typ, msg); err != nil {
			return hangUp(ctx, ws, ended)
		}
		*sent++
	}
}

// open connects user with a good token from its own source address; an
// answer other than connection.ok is an error.
func (t Target) open(ctx context.Context, user string) (*websocket.Conn, error) {
	tok, err := token.ForUser(t.Secret, user)
	if err != nil {
		return nil, err
	}
	ws, first, err := t.connect(ctx, user, tok)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(first), `"connection.ok"`) {
		ws.CloseNow()
		return nil, fmt.Errorf("connect %s: answered %.200s", user, first)
	}
	return ws, nil
}

// connect opens user's socket with tok, from user's own source address,
// and returns it with the first frame the server sent.
func (t Target) connect(ctx context.Context, user, tok string) (*websocket.Conn, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, t.WSURL+"?"+t.connectQuery(user, tok),
		&websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {Source(user)}}})
	if err != nil {
		return nil, nil, err
	}
	ws.SetReadLimit(1 << 20)
	_, first, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, nil, fmt.Errorf("connect %s: no first frame: %w", user, err)
	}
	return ws, first, nil
}

// connectQuery is the query of the SDK's connect as user with tok.
func (t Target) connectQuery(user, tok string) string {
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}})
	return url.Values{"json": {string(payload)}, "api_key": {t.Key}, "authorization": {tok}}.Encode()
}

// readAll reads ws until it ends, in a goroutine of its own (reading also
// answers the server's pings and its close), and then delivers how it
// ended: the close code, or NoCloseFrame.
func readAll(ws *websocket.Conn) <-chan websocket.StatusCode {
	ended := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				ended <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	return ended
}

// hangUp waits for ws to end (ended, from readAll) or for ctx to end, then
// closes it; its reader has stopped when hangUp returns. It returns how ws
// ended.
func hangUp(ctx context.Context, ws *websocket.Conn, ended <-chan websocket.StatusCode) websocket.StatusCode {
	defer ws.CloseNow()
	select {
	case code := <-ended:
		return code
	case <-ctx.Done():
		ws.CloseNow()
		return <-ended
	}
}
