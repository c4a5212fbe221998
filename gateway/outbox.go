package gateway

import "sync"

// outbox is a socket's queue of events waiting to be written. It grows
// with use, so an idle socket holds no buffer (a channel of SendQueue slots
// per socket was the largest part of an idle gateway's heap), and it is
// bounded: a socket that falls SendQueue events behind is closed.
type outbox struct {
	mu    sync.Mutex
	queue [][]byte
	max   int
	// ready holds a token while events wait: the writer's wake-up.
	ready chan struct{}
}

func newOutbox(max int) *outbox { return &outbox{max: max, ready: make(chan struct{}, 1)} }

// push queues b; false when the socket is already max events behind.
func (o *outbox) push(b []byte) bool {
	o.mu.Lock()
	if len(o.queue) >= o.max {
		o.mu.Unlock()
		return false
	}
	o.queue = append(o.queue, b)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default: // the writer is already woken
	}
	return true
}

// take returns every queued event, oldest first, and empties the queue.
func (o *outbox) take() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queue
	o.queue = nil
	return q
}
