// Package socket serves server-side WebSockets (RFC 6455) that cost no
// goroutine and no buffer while idle, so one gateway holds many thousands
// of them in little memory. On Linux one poller goroutine (epoll) watches
// every socket and hands one with input to a small pool of readers; a
// socket with frames to write gets a writer goroutine until they are out.
//
// It speaks what the Stream Chat SDK needs: text messages (fragmented or
// not) up to a bound, pings both ways, the closing handshake; a client
// sending frames faster than a bound is cut off (1008). It negotiates
// no extensions and no subprotocol. TLS ends before it (at the load
// balancer): it needs the plain TCP socket.
package socket

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options bound and time the sockets of a Server. Zero fields take the
// defaults in parentheses.
type Options struct {
	// MaxMessage is the largest message a client may send (4 KiB); a larger
	// one closes the socket with 1009.
	MaxMessage int
	// QueueLimit is how many frames may wait for a slow client before Send
	// answers ErrBehind (256).
	QueueLimit int
	// PingInterval is how often each socket is pinged (5 s); a socket whose
	// ping goes unanswered for PingTimeout (10 s) is aborted.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// IdleTimeout closes (1001) a socket whose client sent no message for
	// this long (0: never).
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a client (10 s); CloseTimeout how
	// long a close waits for the client's answer (5 s).
	WriteTimeout time.Duration
	CloseTimeout time.Duration
	// FrameRate and FrameBurst bound how fast a client may send: every
	// frame counts (a message, a fragment, a ping, a pong), FrameRate a
	// second sustained with bursts of FrameBurst (FrameRate, at least 1).
	// A client past them is closed with 1008 and the rest of what it sends
	// is dropped unread: only a flood gets there (the SDK sends a health
	// check every 25 s). 0: no bound.
	FrameRate  float64
	FrameBurst int

	// now is the clock of the frame rate (tests; nil: time.Now).
	now func() time.Time
}

func (o *Options) defaults() {
	if o.MaxMessage <= 0 {
		o.MaxMessage = 4 << 10
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = 256
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	if o.FrameRate > 0 && o.FrameBurst <= 0 {
		o.FrameBurst = max(1, int(o.FrameRate))
	}
	if o.now == nil {
		o.now = time.Now
	}
}

// Server upgrades HTTP requests to sockets and keeps them.
type Server struct {
	opts Options
	poll poller

	mu     sync.Mutex
	conns  map[uint64]*Conn
	next   uint64
	closed bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewServer starts the poller and the ping clock.
func NewServer(opts Options) (*Server, error) {
	opts.defaults()
	s := &Server{opts: opts, conns: map[uint64]*Conn{}, stop: make(chan struct{})}
	if err := s.poll.start(s); err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	s.wg.Go(s.clock)
	return s, nil
}

// Len is the number of open sockets.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close aborts the sockets still open and stops the server; Upgrade
// refuses from then on.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.mu.Lock()
		s.closed = true
		conns := make([]*Conn, 0, len(s.conns))
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		// Every socket ever registered is done before the poller goes:
		// an Upgrade racing this finds its socket aborted and adds nothing.
		for _, c := range conns {
			c.Abort()
		}
		s.poll.close()
	})
}

// websocketGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Upgrade answers a WebSocket handshake and returns the socket. A request
// that is not one is answered with an HTTP error, and Upgrade returns it.
func (s *Server) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	switch {
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "a WebSocket handshake is a GET", http.StatusMethodNotAllowed)
		return nil, errors.New("socket: handshake method is not GET")
	case !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket"):
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this endpoint speaks WebSocket only", http.StatusUpgradeRequired)
		return nil, errors.New("socket: not a WebSocket handshake")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "unsupported Sec-WebSocket-Version, want 13", http.StatusBadRequest)
		return nil, errors.New("socket: unsupported WebSocket version")
	}
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		http.Error(w, "Sec-WebSocket-Key is not 16 bytes in base64", http.StatusBadRequest)
		return nil, errors.New("socket: bad Sec-WebSocket-Key")
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return nil, fmt.Errorf("socket: hijack: %w", err)
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		_ = nc.Close()
		return nil, fmt.Errorf("socket: %T is not a plain socket", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("socket: %w", err)
	}
	sum := sha1.Sum([]byte(key + websocketGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	// The HTTP server's deadlines no longer apply.
	_ = nc.SetDeadline(time.Now().Add(s.opts.WriteTimeout))
	if _, err := nc.Write([]byte(resp)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("socket: handshake: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	c := &Conn{s: s, nc: nc, rc: rc}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return nil, ErrClosed
	}
	s.next++
	c.id = s.next
	s.conns[c.id] = c
	s.mu.Unlock()
	refused := c.takeBuffered(brw)
	if err := s.poll.add(c); err != nil {
		c.finish()
		return nil, fmt.Errorf("socket: %w", err)
	}
	if refused != nil {
		// Its close is under way: the socket goes when that is done.
		return nil, refused
	}
	return c, nil
}

// takeBuffered handles what the client sent right behind its handshake,
// which the HTTP server has already read.
func (c *Conn) takeBuffered(brw *bufio.ReadWriter) error {
	n := brw.Reader.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := brw.Reader.Peek(n)
	rest, ok := c.process(append([]byte(nil), b...))
	if !ok || c.discard {
		return errors.New("socket: the client closed or sent a refused frame with its handshake")
	}
	c.partial = append([]byte(nil), rest...)
	return nil
}

// hasToken reports whether a comma-separated header holds token.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (s *Server) forget(c *Conn) {
	s.poll.remove(c)
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
}

func (s *Server) lookup(id uint64) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[id]
}

// clock pings the started sockets, aborts those whose ping went
// unanswered and closes those idle past IdleTimeout: one goroutine for
// all, at a tick fine enough for the shortest of those durations.
func (s *Server) clock() {
	tick := min(s.opts.PingInterval, s.opts.PingTimeout) / 20
	if s.opts.IdleTimeout > 0 {
		tick = min(tick, s.opts.IdleTimeout/20)
	}
	tick = max(5*time.Millisecond, min(tick, 250*time.Millisecond))
	t := time.NewTicker(tick)
	defer t.Stop()
	var gone, idle []*Conn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		interval, timeout, idleFor := int64(s.opts.PingInterval), int64(s.opts.PingTimeout), int64(s.opts.IdleTimeout)
		gone, idle = gone[:0], idle[:0]
		s.mu.Lock()
		for _, c := range s.conns {
			last := c.lastPing.Load()
			if last == 0 {
				continue // not started
			}
			if sent := c.pingSent.Load(); sent != 0 {
				if now-sent > timeout {
					gone = append(gone, c)
				}
			} else if now-last >= interval {
				// Marked before it goes, so a quick pong is not lost. A
				// socket whose queue is full gets no ping and no deadline
				// for a pong that cannot come: the next event queued for
				// it closes it as too slow.
				c.pingSent.Store(now)
				if c.send(opPing, nil) == nil {
					c.lastPing.Store(now)
				} else {
					c.pingSent.Store(0)
				}
			}
			if idleFor > 0 && now-c.lastData.Load() > idleFor {
				idle = append(idle, c)
			}
		}
		s.mu.Unlock()
		for _, c := range gone {
			c.abortUnanswered()
		}
		for _, c := range idle {
			c.Close(StatusGoingAway, "no message within the idle timeout")
		}
	}
}
