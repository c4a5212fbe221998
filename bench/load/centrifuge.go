package load

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// CentrifugeDialer opens client sockets to a centrifuge server (the peer)
// speaking its JSON protocol, v2, as centrifuge-js does over WebSocket:
// commands and replies are JSON objects, several to a frame separated by
// newlines; the server pings with an empty object and the client answers
// with one.
type CentrifugeDialer struct {
	// URL is ws://host:port/connection/websocket.
	URL string
	// Secret signs the connection tokens (HS256, the user in sub).
	Secret string
	http   *http.Client
}

// NewCentrifugeDialer returns a dialer whose sockets start from source (an
// IP of 127.0.0.0/8; empty: any).
func NewCentrifugeDialer(url, secret, source string) *CentrifugeDialer {
	d := &net.Dialer{Timeout: 15 * time.Second}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	return &CentrifugeDialer{URL: url, Secret: secret, http: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}}
}

// JoinLeave is a join or leave push: Client (of User) subscribed to or left
// Channel.
type JoinLeave struct {
	Channel string
	User    string
	Client  string
	Join    bool
}

// CentrifugeError is an error reply, or the disconnect a connect got.
type CentrifugeError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *CentrifugeError) Error() string {
	return fmt.Sprintf("centrifuge: code %d: %s", e.Code, e.Message)
}

// CentrifugeConn is one client's socket to the peer.
type CentrifugeConn struct {
	User string
	// ID is the client id the server gave the connection.
	ID     string
	ws     *websocket.Conn
	done   chan struct{}
	onPush func(*CentrifugeConn, JoinLeave, time.Time)
	// unasked counts join and leave pushes that came with no onPush to take
	// them (the socket did not ask for them).
	unasked atomic.Int64

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan reply // nil until a command awaits its reply
}

type reply struct {
	raw json.RawMessage
	err error
}

// Done is closed when the socket has ended.
func (c *CentrifugeConn) Done() <-chan struct{} { return c.done }

// Close closes the socket with 1000, as centrifuge-js's disconnect() does.
func (c *CentrifugeConn) Close() { _ = c.ws.Close(websocket.StatusNormalClosure, "") }

// Drop ends the connection without a close frame, as a network failure.
func (c *CentrifugeConn) Drop() { _ = c.ws.CloseNow() }

// Token signs user's connection token.
func (d *CentrifugeDialer) Token(user string) string {
	h := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p, _ := json.Marshal(map[string]any{"sub": user})
	msg := h + "." + b64.EncodeToString(p)
	mac := hmac.New(sha256.New, []byte(d.Secret))
	mac.Write([]byte(msg))
	return msg + "." + b64.EncodeToString(mac.Sum(nil))
}

var b64 = base64.RawURLEncoding

// Dial connects user, subscribes it to channels (one frame of subscribe
// commands after the connect reply, as centrifuge-js sends them), and
// returns once every reply is in. onPush, when set, gets the join and leave
// pushes the socket receives, with the time each was read; the socket asks
// for them only then.
func (d *CentrifugeDialer) Dial(ctx context.Context, user string, channels []string, onPush func(*CentrifugeConn, JoinLeave, time.Time)) (*CentrifugeConn, error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, d.URL, &websocket.DialOptions{HTTPClient: d.http})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &CentrifugeConn{User: user, ws: ws, done: make(chan struct{}), onPush: onPush}
	fail := func(err error) (*CentrifugeConn, error) {
		ws.CloseNow()
		return nil, fmt.Errorf("centrifuge connect %s: %w", user, err)
	}
	connect, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": d.Token(user), "name": "bench"}})
	if err := ws.Write(dctx, websocket.MessageText, connect); err != nil {
		return fail(err)
	}
	want := map[uint32]bool{1: true}
	var frame []byte
	for i, ch := range channels {
		id := uint32(2 + i)
		want[id] = true
		cmd, _ := json.Marshal(map[string]any{"id": id, "subscribe": c.subscribeRequest(ch)})
		if len(frame) > 0 {
			frame = append(frame, '\n')
		}
		frame = append(frame, cmd...)
	}
	c.nextID = uint32(1 + len(channels))
	// Read replies (answering pings, passing pushes on) until all are in;
	// the subscribes go out once the connect has succeeded.
	for len(want) > 0 {
		_, b, err := ws.Read(dctx)
		if err != nil {
			return fail(err)
		}
		for msg := range bytes.SplitSeq(b, []byte("\n")) {
			id, res, err := c.handle(msg, time.Now())
			if id == 0 || !want[id] {
				continue
			}
			if err != nil {
				return fail(err)
			}
			delete(want, id)
			if id == 1 {
				var r struct {
					Client string `json:"client"`
				}
				_ = json.Unmarshal(res, &r)
				c.ID = r.Client
				if len(frame) > 0 {
					if err := ws.Write(dctx, websocket.MessageText, frame); err != nil {
						return fail(err)
					}
				}
			}
		}
	}
	go c.read()
	return c, nil
}

// handle takes one message from the server: it answers a ping, passes a
// join or leave push on, and returns a reply's id with its result or error.
func (c *CentrifugeConn) handle(msg []byte, at time.Time) (uint32, json.RawMessage, error) {
	msg = bytes.TrimSpace(msg)
	if len(msg) == 0 {
		return 0, nil, nil
	}
	if bytes.Equal(msg, []byte("{}")) {
		// A ping: the pong is an empty object too.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.ws.Write(ctx, websocket.MessageText, []byte("{}"))
		cancel()
		return 0, nil, nil
	}
	var m struct {
		ID    uint32           `json:"id"`
		Error *CentrifugeError `json:"error"`
		Push  *struct {
			Channel string `json:"channel"`
			Join    *struct {
				Info clientInfo `json:"info"`
			} `json:"join"`
			Leave *struct {
				Info clientInfo `json:"info"`
			} `json:"leave"`
		} `json:"push"`
		Connect   json.RawMessage `json:"connect"`
		Subscribe json.RawMessage `json:"subscribe"`
		Presence  json.RawMessage `json:"presence"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return 0, nil, nil
	}
	if m.ID != 0 {
		if m.Error != nil {
			return m.ID, nil, m.Error
		}
		for _, r := range []json.RawMessage{m.Connect, m.Subscribe, m.Presence} {
			if r != nil {
				return m.ID, r, nil
			}
		}
		return m.ID, json.RawMessage("{}"), nil
	}
	if m.Push == nil {
		return 0, nil, nil
	}
	if c.onPush == nil {
		if m.Push.Join != nil || m.Push.Leave != nil {
			c.unasked.Add(1)
		}
		return 0, nil, nil
	}
	if j := m.Push.Join; j != nil {
		c.onPush(c, JoinLeave{Channel: m.Push.Channel, User: j.Info.User, Client: j.Info.Client, Join: true}, at)
	} else if l := m.Push.Leave; l != nil {
		c.onPush(c, JoinLeave{Channel: m.Push.Channel, User: l.Info.User, Client: l.Info.Client}, at)
	}
	return 0, nil, nil
}

type clientInfo struct {
	User   string `json:"user"`
	Client string `json:"client"`
}

// read is the socket's one goroutine: it handles what the server sends,
// which also answers its pings, and hands replies to waiting commands.
func (c *CentrifugeConn) read() {
	defer func() {
		c.mu.Lock()
		for id, ch := range c.pending {
			ch <- reply{err: net.ErrClosed}
			delete(c.pending, id)
		}
		c.mu.Unlock()
		close(c.done)
	}()
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		at := time.Now()
		for msg := range bytes.SplitSeq(b, []byte("\n")) {
			id, res, err := c.handle(msg, at)
			if id == 0 {
				continue
			}
			c.mu.Lock()
			ch := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- reply{raw: res, err: err}
			}
		}
	}
}

// call sends one command (method and its request) and waits for its reply.
func (c *CentrifugeConn) call(ctx context.Context, method string, req any) (json.RawMessage, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	if c.pending == nil {
		c.pending = map[uint32]chan reply{}
	}
	c.pending[id] = ch
	c.mu.Unlock()
	cmd, _ := json.Marshal(map[string]any{"id": id, method: req})
	if err := c.ws.Write(ctx, websocket.MessageText, cmd); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, err
	}
	select {
	case r := <-ch:
		return r.raw, r.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	case <-c.done:
		return nil, errors.New("centrifuge: socket closed")
	}
}

// Subscribe subscribes the connection to channel.
func (c *CentrifugeConn) Subscribe(ctx context.Context, channel string) error {
	_, err := c.call(ctx, "subscribe", c.subscribeRequest(channel))
	return err
}

// subscribeRequest asks for join and leave pushes when the socket has
// someone to hand them to (centrifuge-js's joinLeave option).
func (c *CentrifugeConn) subscribeRequest(channel string) map[string]any {
	req := map[string]any{"channel": channel}
	if c.onPush != nil {
		req["join_leave"] = true
	}
	return req
}

// Presence returns the users present in channel (of the clients subscribed
// there), from the server's presence manager.
func (c *CentrifugeConn) Presence(ctx context.Context, channel string) (map[string]bool, error) {
	raw, err := c.call(ctx, "presence", map[string]any{"channel": channel})
	if err != nil {
		return nil, err
	}
	var r struct {
		Presence map[string]clientInfo `json:"presence"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("centrifuge presence %s: %w", channel, err)
	}
	users := make(map[string]bool, len(r.Presence))
	for _, ci := range r.Presence {
		users[ci.User] = true
	}
	return users, nil
}
