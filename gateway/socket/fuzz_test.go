package socket

import (
	"net"
	"testing"
	"time"
)

// discardConn stands in for a client socket: writes vanish.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

type countingHandler struct {
	max  int
	msgs int
	t    *testing.T
}

func (h *countingHandler) Message(b []byte) {
	h.msgs++
	if len(b) > h.max {
		h.t.Fatalf("delivered a %d-byte message past the %d-byte bound", len(b), h.max)
	}
}

func (h *countingHandler) Closed() {}

// FuzzClientBytes feeds what a client might send, cut into two reads at any
// point: the parser never panics, never delivers a message past the bound,
// and never keeps more than one frame's worth of a partial frame.
func FuzzClientBytes(f *testing.F) {
	f.Add(clientFrame(true, opText, []byte(`[{"type":"health.check"}]`)), 3)
	f.Add(append(clientFrame(false, opText, []byte("hel")), clientFrame(true, opContinuation, []byte("lo"))...), 7)
	f.Add(clientFrame(true, opPing, []byte("p")), 1)
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xE8}), 2)
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0x10, 0}, 5)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		const max = 64
		s := &Server{opts: Options{MaxMessage: max}, conns: map[uint64]*Conn{}}
		s.opts.defaults()
		c := &Conn{s: s, nc: discardConn{}}
		h := &countingHandler{max: max, t: t}
		c.Start(h)
		if cut < 0 || cut > len(b) {
			cut = len(b) / 2
		}
		scratch := make([]byte, 2*(max+14))
		for _, part := range [][]byte{b[:cut], b[cut:]} {
			for len(part) > 0 {
				n := 0
				more := c.readOnce(scratch, func(dst []byte) (int, error) {
					n = copy(dst, part)
					return n, nil
				})
				part = part[n:]
				if len(c.partial) > max+14 {
					t.Fatalf("kept %d bytes of a partial frame", len(c.partial))
				}
				if !more {
					return
				}
			}
		}
	})
}
