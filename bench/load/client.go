// Package load drives many SDK-like WebSocket clients from one process, as
// leanly as it can (it shares the machine with the server it measures): one
// goroutine per socket, to read (which also answers the server's pings), and
// one for the whole pool's health checks. It speaks the Stream SDK's
// protocol to Presence (Dialer, Conn, REST) and centrifuge-js's to the
// centrifuge peer (CentrifugeDialer, CentrifugeConn); System puts both
// behind one interface for the scenarios (Churn, Fanout).
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/pkg/token"
)

// Target is a Presence /connect endpoint and the credentials to use it.
type Target struct {
	// URL is ws://host:port/connect.
	URL    string
	Key    string
	Secret string
}

// Conn is one client's socket.
type Conn struct {
	User string
	ID   string
	ws   *websocket.Conn
	done chan struct{}
}

// Done is closed when the socket has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close closes the socket with 1000, as disconnectUser does.
func (c *Conn) Close() { _ = c.ws.Close(websocket.StatusNormalClosure, "") }

// Drop ends the connection without a close frame, as a network failure.
func (c *Conn) Drop() { _ = c.ws.CloseNow() }

// Socket is one client's connection, to Presence (*Conn) or to the
// centrifuge peer (*CentrifugeConn).
type Socket interface {
	// Done is closed when the socket has ended.
	Done() <-chan struct{}
	// Close closes it as the client app would.
	Close()
	// Drop ends it without a word, as a network failure.
	Drop()
}

// ConnectError is the error frame the server answered a connect with.
type ConnectError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("connect refused: code %d: %s", e.Code, e.Message)
}

// Dialer opens client sockets from one source address (empty: any).
type Dialer struct {
	Target Target
	// OnFrame, when set, gets every frame a socket receives after
	// connection.ok, with the time it was read.
	OnFrame func(c *Conn, frame []byte, at time.Time)
	http    *http.Client
}

// NewDialer returns a dialer whose sockets start from source (an IP of
// 127.0.0.0/8, so many processes and addresses share the ephemeral ports).
func NewDialer(t Target, source string) *Dialer {
	d := &net.Dialer{Timeout: 15 * time.Second}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	return &Dialer{Target: t, http: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}}
}

// Dial connects user and waits for connection.ok.
func (d *Dialer) Dial(ctx context.Context, user string) (*Conn, error) {
	return d.DialFunc(ctx, user, d.OnFrame)
}

// DialFunc is Dial with this socket's own frame handler.
func (d *Dialer) DialFunc(ctx context.Context, user string, onFrame func(*Conn, []byte, time.Time)) (*Conn, error) {
	tok, err := token.ForUser(d.Target.Secret, user)
	if err != nil {
		return nil, err
	}
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}})
	q := url.Values{"json": {string(payload)}, "api_key": {d.Target.Key}, "authorization": {tok}, "stream-auth-type": {"jwt"}}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second) // the SDK's connect timeout
	defer cancel()
	ws, _, err := websocket.Dial(dctx, d.Target.URL+"?"+q.Encode(), &websocket.DialOptions{HTTPClient: d.http})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	_, b, err := ws.Read(dctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect %s: first frame: %w", user, err)
	}
	var first struct {
		Type         string        `json:"type"`
		ConnectionID string        `json:"connection_id"`
		Error        *ConnectError `json:"error"`
	}
	if err := json.Unmarshal(b, &first); err != nil || first.Error != nil || first.Type != "connection.ok" {
		ws.CloseNow()
		if first.Error != nil {
			return nil, first.Error
		}
		return nil, fmt.Errorf("connect %s: first frame %.200s, want connection.ok", user, b)
	}
	c := &Conn{User: user, ID: first.ConnectionID, ws: ws, done: make(chan struct{})}
	go c.read(onFrame)
	return c, nil
}

// read hands what the server sends to onFrame (or drops it); reading is
// also what answers its pings.
func (c *Conn) read(onFrame func(*Conn, []byte, time.Time)) {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		if onFrame != nil {
			onFrame(c, b, time.Now())
		}
	}
}

// Pool is a set of live client sockets with one health-check loop for all.
type Pool struct {
	mu    sync.Mutex
	conns map[Socket]struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewPool starts a pool sending each Presence socket a health check every
// interval, as the SDK does (the centrifuge peer pings its clients itself).
func NewPool(interval time.Duration) *Pool {
	p := &Pool{conns: map[Socket]struct{}{}, stop: make(chan struct{})}
	p.wg.Go(func() { p.healthChecks(interval) })
	return p
}

// Add puts c in the pool until its socket ends.
func (p *Pool) Add(c Socket) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	go func() {
		<-c.Done()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
}

// Drop drops every socket at once, as a network failure would, and
// returns how many.
func (p *Pool) Drop() int {
	conns := p.snapshot()
	for _, c := range conns {
		c.Drop()
	}
	return len(conns)
}

func (p *Pool) snapshot() []Socket {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := make([]Socket, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	return conns
}

// Len is the number of live sockets.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close closes every socket and stops the health checks.
func (p *Pool) Close() {
	close(p.stop)
	p.wg.Wait()
	conns := p.snapshot()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		sem <- struct{}{}
		wg.Go(func() { defer func() { <-sem }(); c.Close() })
	}
	wg.Wait()
}

func (p *Pool) healthChecks(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		for _, s := range p.snapshot() {
			c, ok := s.(*Conn)
			if !ok {
				continue
			}
			msg, _ := json.Marshal(map[string]any{"type": "health.check", "client_id": c.ID})
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.ws.Write(ctx, websocket.MessageText, msg)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				continue // the reader sees the socket end
			}
		}
	}
}
