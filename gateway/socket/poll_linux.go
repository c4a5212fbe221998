package socket

import (
	"errors"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// poller watches every socket for input with one epoll instance and one
// goroutine; sockets with input go to a pool of readers, each with one
// scratch buffer. Registrations are one-shot: a socket is handed to one
// reader at a time and re-armed when it is done.
type poller struct {
	s    *Server
	epfd int
	work chan *Conn
	wg   sync.WaitGroup
	stop chan struct{}
	once sync.Once
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func (p *poller) start(s *Server) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	p.s, p.epfd = s, epfd
	p.work = make(chan *Conn, 1024)
	p.stop = make(chan struct{})
	// Room for the start of a frame kept from before plus a whole one.
	scratch := 2 * (s.opts.MaxMessage + 14)
	readers := runtime.GOMAXPROCS(0)
	var readersWG sync.WaitGroup
	for range readers {
		readersWG.Go(func() {
			buf := make([]byte, scratch)
			for c := range p.work {
				p.read(c, buf)
			}
		})
	}
	p.wg.Go(func() {
		p.wait()
		close(p.work)
		readersWG.Wait()
	})
	return nil
}

func (p *poller) close() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
		_ = syscall.Close(p.epfd)
	})
}

// wait hands each socket with input to the readers until the poller stops.
func (p *poller) wait() {
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		// A bounded wait, so a stopped poller notices within it.
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil {
			if !errors.Is(err, syscall.EINTR) {
				// Not expected while the epoll instance is open; giving up
				// would leave every socket unread, so wait and try again.
				time.Sleep(10 * time.Millisecond) // back off, not synchronisation
			}
			continue
		}
		for _, ev := range events[:n] {
			if c := p.s.lookup(eventID(ev)); c != nil {
				p.work <- c
			}
		}
	}
}

// read reads what a socket's client sent and re-arms it.
func (p *poller) read(c *Conn, buf []byte) {
	// The lock orders this read after the previous reader's re-arm, which
	// happened under it: the read side's state passes between readers.
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done {
		return
	}
	more := c.readOnce(buf, func(b []byte) (int, error) {
		var n int
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			for {
				n, rerr = syscall.Read(int(fd), b)
				if rerr != syscall.EINTR {
					return true // never wait: the poller said there is input
				}
			}
		})
		if err != nil {
			return 0, err
		}
		return n, rerr
	})
	if !more {
		return
	}
	// Under the socket's lock: once it is done its descriptor may be
	// closed and its number reused by another socket.
	c.mu.Lock()
	if !c.done {
		ev := pollEvent(c)
		if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
			c.mu.Unlock()
			c.finish()
			return
		}
	}
	c.mu.Unlock()
}

func (p *poller) add(c *Conn) error {
	var fd int
	if err := c.rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return ErrClosed
	}
	c.fd = fd
	ev := pollEvent(c)
	return syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// remove stops watching c; it runs before c's descriptor is closed.
func (p *poller) remove(c *Conn) {
	if c.fd > 0 {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
}

// pollEvent carries the socket's id, not its descriptor number, which a
// later socket may reuse while an event for this one is in flight.
func pollEvent(c *Conn) syscall.EpollEvent {
	ev := syscall.EpollEvent{Events: pollEvents}
	ev.Fd, ev.Pad = int32(uint32(c.id)), int32(uint32(c.id>>32))
	return ev
}

func eventID(ev syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
