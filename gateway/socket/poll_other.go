//go:build !linux

package socket

// poller, where there is no epoll, reads each socket with a goroutine of
// its own: correct everywhere, lean only on Linux.
type poller struct{ s *Server }

func (p *poller) start(s *Server) error { p.s = s; return nil }

func (p *poller) add(c *Conn) error {
	go func() {
		buf := make([]byte, 2*(p.s.opts.MaxMessage+14))
		for c.readOnce(buf, c.nc.Read) {
		}
	}()
	return nil
}

func (p *poller) remove(*Conn) {}

func (p *poller) close() {}
