package socket

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/presencehq/presence/pkg/ratelimit"
)

// Handler gets what one socket's client sends.
type Handler interface {
	// Message gets each text message. It runs on one of the server's
	// readers, so it must not block, and b is valid only during the call.
	Message(b []byte)
	// Closed is called once, in a goroutine of its own, after the socket
	// has closed.
	Closed()
}

// What Send answers when a frame cannot be queued.
var (
	ErrClosed = errors.New("socket: closed")
	ErrBehind = errors.New("socket: too many frames waiting for a slow client")
)

// Conn is a server-side WebSocket after its handshake. While idle it holds
// no goroutine and no buffer: the server's poller hands it to a reader when
// the client sends something, and a writer goroutine lives only while
// frames wait to be written.
type Conn struct {
	s  *Server
	id uint64
	nc net.Conn
	rc syscall.RawConn
	fd int

	// The read side, used by one reader at a time: the start of a frame
	// not yet whole, and a fragmented message under way (msgOp 0: none).
	partial []byte
	message []byte
	msgOp   byte
	// discard is set once a frame was refused: the rest is dropped
	// unread until the client closes or CloseTimeout passes.
	discard bool
	// frames is the client's frame budget (Options.FrameRate).
	frames ratelimit.Bucket

	// lastData is when the client last sent a message, pingSent when an
	// unanswered ping went out (0: none is out), lastPing when the last
	// ping went out; unix nanoseconds.
	lastData atomic.Int64
	pingSent atomic.Int64
	lastPing atomic.Int64

	mu    sync.Mutex
	h     Handler
	queue []frame
	// writing is set while a writer goroutine runs, inflight is the size
	// of the batch it is writing: both count against QueueLimit.
	writing  bool
	inflight int
	// The closing handshake: our close frame is queued (nothing more is),
	// written, the client's has arrived; failed closes without waiting.
	closeSent, closeWritten, closeRecv, failed bool
	closeWait                                  *time.Timer
	done                                       bool
	// ended says who ended the socket and with which code, as Ending
	// reports it; set by the first close, from either side.
	ended    StatusCode
	endedBy  bool // by the client
	endKnown bool
}

type frame struct {
	op      byte
	payload []byte
}

// Gone reports whether the client has closed the socket (or it was closed):
// work on its behalf can stop.
func (c *Conn) Gone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done || c.closeRecv
}

// Start hands the socket's messages to h and starts its ping and idle
// clocks. Before Start, messages are dropped (a client speaks after the
// server's first frame); after the socket closed, Start calls h.Closed.
func (c *Conn) Start(h Handler) {
	now := time.Now().UnixNano()
	c.lastData.Store(now)
	c.lastPing.Store(now)
	c.mu.Lock()
	c.h = h
	done := c.done
	c.mu.Unlock()
	if done {
		go h.Closed()
	}
}

// Send queues a text message. b must not change afterwards: it is written
// as it is, possibly to many sockets.
func (c *Conn) Send(b []byte) error { return c.send(opText, b) }

func (c *Conn) send(op byte, b []byte) error {
	c.mu.Lock()
	if c.closeSent || c.done {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(c.queue)+c.inflight >= c.s.opts.QueueLimit {
		c.mu.Unlock()
		return ErrBehind
	}
	c.queue = append(c.queue, frame{op, b})
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.flush()
	}
	return nil
}

// Close starts the closing handshake: the close frame goes out after what
// is queued, and the socket closes when the client answers it or after the
// server's CloseTimeout.
func (c *Conn) Close(code StatusCode, reason string) { c.startClose(code, reason, false) }

func (c *Conn) startClose(code StatusCode, reason string, fail bool) {
	c.mu.Lock()
	if c.closeSent || c.done {
		if fail && c.closeWritten {
			// Our close is out; the client answered with something refused.
			c.closeWriteSide()
		}
		c.failed = c.failed || fail
		c.mu.Unlock()
		return
	}
	c.closeSent, c.failed = true, fail
	c.noteEnd(code, false)
	c.queue = append(c.queue, frame{opClose, closePayload(code, reason)})
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.flush()
	}
}

// Abort closes the socket at once, without the closing handshake (for a
// client presumed gone, which would never answer it).
func (c *Conn) Abort() { c.finish() }

// abortUnanswered aborts a socket whose client stopped answering pings:
// Ending reads 1001 (going away), by the server.
func (c *Conn) abortUnanswered() {
	c.mu.Lock()
	c.noteEnd(StatusGoingAway, false)
	c.mu.Unlock()
	c.finish()
}

// Ending reports how the socket ended: the close code and whether the
// client ended it (its close frame, or it went away: 1006). Meaningful once
// the handler's Closed has been called.
func (c *Conn) Ending() (code StatusCode, byClient bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.endKnown {
		return StatusAbnormal, true
	}
	return c.ended, c.endedBy
}

// noteEnd keeps the first ending; c.mu is held.
func (c *Conn) noteEnd(code StatusCode, byClient bool) {
	if !c.endKnown {
		c.ended, c.endedBy, c.endKnown = code, byClient, true
	}
}

// finish closes the socket; the first call tells the handler.
func (c *Conn) finish() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	c.done = true
	c.queue = nil
	if c.closeWait != nil {
		c.closeWait.Stop()
	}
	h := c.h
	c.mu.Unlock()
	c.s.forget(c)
	_ = c.nc.Close()
	if h != nil {
		go h.Closed()
	}
}

// flush writes queued frames until none wait, then ends.
func (c *Conn) flush() {
	for {
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.inflight = len(q)
		if len(q) == 0 || c.done {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		// One writev per batch: a header per frame, payloads as they are.
		hdrs := make([]byte, 0, maxHeader*len(q))
		bufs := make(net.Buffers, 0, 2*len(q))
		closing := false
		for _, f := range q {
			i := len(hdrs)
			hdrs = appendHeader(hdrs, f.op, len(f.payload))
			bufs = append(bufs, hdrs[i:len(hdrs):len(hdrs)])
			if len(f.payload) > 0 {
				bufs = append(bufs, f.payload)
			}
			closing = closing || f.op == opClose
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		if _, err := bufs.WriteTo(c.nc); err != nil {
			c.finish()
			return
		}
		if closing {
			c.closeWrote()
		}
	}
}

// closeWrote runs once our close frame is out: the socket closes when the
// client's answer is in (or, after a refused frame, when the client closes
// its side), or after CloseTimeout.
func (c *Conn) closeWrote() {
	c.mu.Lock()
	c.closeWritten = true
	now := c.closeRecv
	if c.failed {
		c.closeWriteSide()
	}
	if !now && !c.done {
		c.closeWait = time.AfterFunc(c.s.opts.CloseTimeout, c.finish)
	}
	c.mu.Unlock()
	if now {
		c.finish()
	}
}

// closeWriteSide ends our side of the connection with a FIN, so the close
// frame before it arrives (closing with the client's bytes unread would
// send a reset, which may destroy it); the reader drops what comes until
// the client closes too.
func (c *Conn) closeWriteSide() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// closeReceived answers the client's close frame with the same code.
func (c *Conn) closeReceived(code StatusCode) {
	c.mu.Lock()
	c.closeRecv = true
	c.noteEnd(code, true)
	sent, written := c.closeSent, c.closeWritten
	c.mu.Unlock()
	switch {
	case written:
		c.finish()
	case !sent:
		if code == 1005 || code == 1006 || code == 1015 {
			code = StatusNormal // codes that must not be sent (§7.4.1)
		}
		c.startClose(code, "", false)
	}
	// Sent but not yet written: the writer closes after writing it.
}

// readOnce reads what the client sent with read and handles each whole
// frame in it; scratch holds the start of a frame left from before. It
// reports whether the socket should be read again.
func (c *Conn) readOnce(scratch []byte, read func([]byte) (int, error)) bool {
	kept := copy(scratch, c.partial)
	n, err := read(scratch[kept:])
	if errors.Is(err, syscall.EAGAIN) {
		return true // woken for nothing
	}
	if err != nil || n <= 0 {
		c.finish() // the client is gone
		return false
	}
	if c.discard {
		return true
	}
	rest, ok := c.process(scratch[:kept+n])
	c.partial = nil
	if len(rest) > 0 {
		c.partial = bytes.Clone(rest)
	}
	return ok
}

// process handles each whole frame in b; it returns the start of one not
// yet whole, and false when the socket must not be read any more.
func (c *Conn) process(b []byte) ([]byte, bool) {
	rate := c.s.opts.FrameRate
	var now time.Time
	if rate > 0 {
		now = c.s.opts.now() // what arrived in one read arrived at once
	}
	for len(b) > 0 && !c.discard {
		h, n, err := parseHeader(b, c.s.opts.MaxMessage)
		if err != nil {
			c.fail(err)
			return nil, true
		}
		if n == 0 || len(b) < n+h.length {
			return b, true
		}
		if rate > 0 && !c.frames.Allow(now, rate, float64(c.s.opts.FrameBurst)) {
			c.fail(errTooFast)
			return nil, true
		}
		payload := b[n : n+h.length]
		unmask(payload, h.mask)
		b = b[n+h.length:]
		if !c.frame(h, payload) {
			return nil, false
		}
	}
	return nil, true
}

// fail closes the socket for a frame it refuses, without waiting for a
// closing handshake; what the client sends from here is dropped.
func (c *Conn) fail(err error) {
	code := StatusProtocolError
	switch {
	case errors.Is(err, errTooBig):
		code = StatusTooBig
	case errors.Is(err, errInvalidUTF8):
		code = StatusInvalidData
	case errors.Is(err, errTooFast):
		code = StatusPolicyViolation
	}
	c.discard, c.partial, c.message, c.msgOp = true, nil, nil, 0
	c.startClose(code, err.Error(), true)
}

// frame handles one client frame; false when the socket must not be read
// any more.
func (c *Conn) frame(h header, payload []byte) bool {
	switch h.op {
	case opPing:
		_ = c.send(opPong, bytes.Clone(payload)) // a client past its queue gets no pong
	case opPong:
		c.pingSent.Store(0)
	case opClose:
		code, err := parseClose(payload)
		if err != nil {
			c.fail(err)
			return true
		}
		c.closeReceived(code)
		return false
	case opText, opBinary:
		if c.msgOp != 0 {
			c.fail(errProtocol) // a new message inside a fragmented one
			return true
		}
		if h.fin {
			c.deliver(h.op, payload)
			return true
		}
		c.msgOp, c.message = h.op, bytes.Clone(payload)
	case opContinuation:
		if c.msgOp == 0 {
			c.fail(errProtocol)
			return true
		}
		if len(c.message)+len(payload) > c.s.opts.MaxMessage {
			c.fail(errTooBig)
			return true
		}
		c.message = append(c.message, payload...)
		if h.fin {
			op, msg := c.msgOp, c.message
			c.msgOp, c.message = 0, nil
			c.deliver(op, msg)
		}
	}
	return true
}

// deliver hands a whole text message to the handler; binary ones count as
// a sign of life and are otherwise ignored.
func (c *Conn) deliver(op byte, msg []byte) {
	if op == opText && !utf8.Valid(msg) {
		c.fail(errInvalidUTF8)
		return
	}
	c.lastData.Store(time.Now().UnixNano())
	c.mu.Lock()
	h, done := c.h, c.done
	c.mu.Unlock()
	if op == opText && h != nil && !done {
		h.Message(msg)
	}
}
