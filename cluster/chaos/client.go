package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/pkg/token"
)

// PresenceChanged is the event type watchers count.
const PresenceChanged = "user.presence.changed"

// healthCheckEvery is how often a client sends the SDK's health.check
// (the SDK's own interval), so no gateway finds it silent however long a
// scenario runs.
const healthCheckEvery = 25 * time.Second

// ConnectError is the error frame a gateway answers a refused connect with,
// in the SDK's error format.
type ConnectError struct {
	Code       int    `json:"code"`
	StatusCode int    `json:"StatusCode"`
	Message    string `json:"message"`
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("connect refused: code %d (HTTP %d): %s", e.Code, e.StatusCode, e.Message)
}

// CodeRateLimit is the SDK's rate-limit error code.
const CodeRateLimit = 9

// Retryable says whether the SDK retries a connect refused with this code
// (PROTOCOL.md: -1, 3, 9, 23, 45, 60, 71).
func (e *ConnectError) Retryable() bool {
	return slices.Contains([]int{-1, 3, 9, 23, 45, 60, 71}, e.Code)
}

// Event is what a client reads of an event it receives.
type Event struct {
	Type   string
	User   string
	Online bool
	// At is when the client received it.
	At time.Time
}

// Creds are what a client needs to connect: the API key and the secret its
// tokens are signed with (the test plays the app's backend).
type Creds struct {
	Key    string
	Secret string
}

// Conn is one SDK-like socket: connected, answering pings (the WebSocket
// library does while reading), sending health checks, reading events.
type Conn struct {
	User string
	// ID is the connection id from connection.ok (names its gateway node).
	ID string
	// URL is the /connect URL dialed.
	URL string

	ws     *websocket.Conn
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what ended the read loop; set before done closes
}

// Dial opens a socket as user on a /connect URL and waits for the first
// frame: connection.ok, or an error frame (returned as *ConnectError).
// onEvent, when set, gets every event read afterwards, on the read
// goroutine.
func Dial(ctx context.Context, connectURL string, creds Creds, user string, onEvent func(Event)) (*Conn, error) {
	tok, err := token.ForUser(creds.Secret, user)
	if err != nil {
		return nil, err
	}
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}, "client_request_id": randomID()})
	q := url.Values{"json": {string(payload)}, "api_key": {creds.Key}, "authorization": {tok}, "stream-auth-type": {"jwt"}}
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second) // the SDK's connect timeout
	defer dcancel()
	ws, _, err := websocket.Dial(dctx, connectURL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
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
	if err := json.Unmarshal(b, &first); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect %s: first frame %q: %w", user, b, err)
	}
	if first.Error != nil {
		ws.CloseNow()
		return nil, first.Error
	}
	if first.Type != "connection.ok" || first.ConnectionID == "" {
		ws.CloseNow()
		return nil, fmt.Errorf("connect %s: first frame %s, want connection.ok", user, b)
	}
	rctx, cancel := context.WithCancel(context.Background())
	c := &Conn{User: user, ID: first.ConnectionID, URL: connectURL, ws: ws, cancel: cancel, done: make(chan struct{})}
	go c.read(rctx, onEvent)
	go c.healthChecks(rctx)
	return c, nil
}

func (c *Conn) read(ctx context.Context, onEvent func(Event)) {
	defer close(c.done)
	defer c.cancel()
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			c.err = err
			return
		}
		if onEvent == nil {
			continue
		}
		var ev struct {
			Type string `json:"type"`
			User struct {
				ID     string `json:"id"`
				Online bool   `json:"online"`
			} `json:"user"`
		}
		if json.Unmarshal(b, &ev) == nil && ev.Type != "" {
			onEvent(Event{Type: ev.Type, User: ev.User.ID, Online: ev.User.Online, At: time.Now()})
		}
	}
}

func (c *Conn) healthChecks(ctx context.Context) {
	t := time.NewTicker(healthCheckEvery)
	defer t.Stop()
	msg := []byte(`[{"type":"health.check","client_id":"` + c.ID + `"}]`)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = c.ws.Write(wctx, websocket.MessageText, msg)
		cancel()
	}
}

// Done is closed when the socket has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is what ended the socket (after Done).
func (c *Conn) Err() error {
	<-c.done
	return c.err
}

// CloseStatus is the close code the socket ended with, -1 when it ended
// without a close frame (after Done).
func (c *Conn) CloseStatus() websocket.StatusCode { return websocket.CloseStatus(c.Err()) }

// Close closes the socket the way the SDK's disconnectUser does (1000, with
// the closing handshake) and waits until it has ended.
func (c *Conn) Close() {
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	c.cancel()
	<-c.done
}

// Drop ends the socket abruptly, without a closing handshake (the network
// went away under the client), and waits until it has ended.
func (c *Conn) Drop() {
	_ = c.ws.CloseNow()
	c.cancel()
	<-c.done
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Backoff is the SDK's wait before reconnecting after the n-th consecutive
// failure: random in [max(250, (n−1)·2000), min(500+n·2000, 25000)] ms.
func Backoff(n int) time.Duration {
	hi := min(500+n*2000, 25000)
	lo := min(max(250, (n-1)*2000), 25000)
	ms := lo
	if hi > lo {
		ms += mrand.IntN(hi - lo)
	}
	return time.Duration(ms) * time.Millisecond
}

// Balancer stands in for the load balancer in front of the gateways: each
// connect goes to the next gateway in turn, and one that refuses the TCP
// connection (stopped, or draining with its listener closed) is skipped, as
// nginx passes a refused connect to the next upstream.
type Balancer struct {
	urls []string
	next atomic.Uint64
}

// NewBalancer balances over /connect URLs.
func NewBalancer(urls ...string) *Balancer { return &Balancer{urls: urls} }

// Dial connects through the balancer.
func (b *Balancer) Dial(ctx context.Context, creds Creds, user string, onEvent func(Event)) (*Conn, error) {
	start := b.next.Add(1) - 1 // the first connect goes to the first URL
	var err error
	for i := range b.urls {
		u := b.urls[(int(start)+i)%len(b.urls)]
		var c *Conn
		if c, err = Dial(ctx, u, creds, user, onEvent); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			return c, err
		}
	}
	return nil, err
}

// Session is one SDK client of one user: it connects through a balancer,
// and when its socket ends with anything but 1000 it reconnects after the
// SDK's backoff, counting consecutive failures (a refused connect, a rate
// limit, a dropped socket) as the SDK does.
type Session struct {
	User  string
	bal   *Balancer
	creds Creds

	stop     chan struct{} // closed by Leave
	stopOnce sync.Once
	done     chan struct{}

	mu          sync.Mutex
	conn        *Conn
	giveUp      bool // do not reconnect after the current socket ends
	changed     chan struct{}
	connects    int
	rateLimited int
	failures    int // failed connect attempts
	closeCodes  []websocket.StatusCode
	lastUp      time.Time // last connection.ok
	lastDown    time.Time // last socket end
	fatal       error
}

// StartSession starts a client of user connecting through bal; it runs
// until Leave or ctx ends.
func StartSession(ctx context.Context, bal *Balancer, creds Creds, user string) *Session {
	s := &Session{User: user, bal: bal, creds: creds, stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
	go s.run(ctx)
	return s
}

func (s *Session) run(ctx context.Context) {
	defer close(s.done)
	failures := 0
	for {
		if failures > 0 {
			t := time.NewTimer(Backoff(failures))
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		c, err := s.bal.Dial(ctx, s.creds, s.User, nil)
		if err != nil {
			failures++
			var ce *ConnectError
			s.mu.Lock()
			s.failures++
			if errors.As(err, &ce) && ce.Code == CodeRateLimit {
				s.rateLimited++
			}
			if errors.As(err, &ce) && !ce.Retryable() {
				s.fatal = err
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			continue
		}
		failures = 0
		s.mu.Lock()
		s.conn, s.lastUp = c, time.Now()
		s.connects++
		s.notifyLocked()
		s.mu.Unlock()
		select {
		case <-c.Done():
		case <-s.stop:
			c.Close()
		case <-ctx.Done():
			c.Drop()
		}
		code := c.CloseStatus()
		s.mu.Lock()
		s.conn, s.lastDown = nil, time.Now()
		s.closeCodes = append(s.closeCodes, code)
		giveUp := s.giveUp
		s.notifyLocked()
		s.mu.Unlock()
		if giveUp || code == websocket.StatusNormalClosure {
			return
		}
		failures = 1
	}
}

func (s *Session) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Connected says whether the session has a live socket now, and its id.
func (s *Session) Connected() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return false, ""
	}
	return true, s.conn.ID
}

// WaitConnected waits until the session has a live socket.
func (s *Session) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		up, ch, fatal := s.conn != nil, s.changed, s.fatal
		s.mu.Unlock()
		if up {
			return nil
		}
		if fatal != nil {
			return fatal
		}
		select {
		case <-ch:
		case <-s.done:
			return fmt.Errorf("session of %s ended", s.User)
		case <-ctx.Done():
			return fmt.Errorf("session of %s not connected: %w", s.User, ctx.Err())
		}
	}
}

// Drop ends the current socket abruptly (the network dropped it); the
// session reconnects unless GiveUp was called.
func (s *Session) Drop() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Drop()
	}
}

// GiveUp makes the session end, without reconnecting, when its current
// socket ends (the user closed the app while it was being drained).
func (s *Session) GiveUp() {
	s.mu.Lock()
	s.giveUp = true
	s.mu.Unlock()
}

// Leave disconnects like disconnectUser (1000) and ends the session.
func (s *Session) Leave() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// SessionStats is what a session went through.
type SessionStats struct {
	Connects    int
	Failures    int
	RateLimited int
	CloseCodes  []websocket.StatusCode
	LastUp      time.Time
	LastDown    time.Time
	Fatal       error
}

// Stats returns the session's counters.
func (s *Session) Stats() SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SessionStats{
		Connects: s.connects, Failures: s.failures, RateLimited: s.rateLimited,
		CloseCodes: slices.Clone(s.closeCodes), LastUp: s.lastUp, LastDown: s.lastDown, Fatal: s.fatal,
	}
}
