package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watched reads a bucket through a bounded cache that a watch of the bucket
// keeps current: a hot key costs no request. A cached value trails the
// bucket by the watch's delay (well under a millisecond on one machine),
// and never by more than WatchedTTL should the watch stall (a NATS server
// going away): past it, the key is read again.
//
// Values are shared between readers: treat them as read-only.
type Watched[T any] struct {
	kv  jetstream.KeyValue
	max int

	mu      sync.Mutex
	entries map[string]watchedEntry[T]
	// reading holds keys being read; an update the watch brings meanwhile
	// is kept here, so the read (older) cannot overwrite it in the cache.
	reading map[string]*watchedEntry[T]

	stopped <-chan struct{}
}

type watchedEntry[T any] struct {
	value  T
	found  bool
	rev    uint64
	readAt time.Time
}

// WatchedTTL bounds how long a cached value is believed without the watch
// confirming it.
const WatchedTTL = 10 * time.Second

// NewWatched starts watching kv; the watch ends with ctx (Stopped tells
// when). At most maxKeys keys are cached; past it, arbitrary ones go.
func NewWatched[T any](ctx context.Context, kv jetstream.KeyValue, maxKeys int) (*Watched[T], error) {
	c := &Watched[T]{
		kv: kv, max: maxKeys,
		entries: map[string]watchedEntry[T]{}, reading: map[string]*watchedEntry[T]{},
	}
	stopped, err := FollowChanges(ctx, kv, c.update)
	if err != nil {
		return nil, err
	}
	c.stopped = stopped
	return c, nil
}

// Stopped is closed once the watch has ended.
func (c *Watched[T]) Stopped() <-chan struct{} { return c.stopped }

// update takes a change the watch brought to a key cached or being read;
// others are not kept (the next Get reads them).
func (c *Watched[T]) update(e jetstream.KeyValueEntry) {
	n := watchedEntry[T]{rev: e.Revision(), readAt: time.Now()}
	if e.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(e.Value(), &n.value); err != nil {
			c.mu.Lock()
			delete(c.entries, e.Key()) // read again, and fail there
			c.mu.Unlock()
			return
		}
		n.found = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.reading[e.Key()]; ok && n.rev > r.rev {
		*r = n
	}
	if old, ok := c.entries[e.Key()]; ok && n.rev > old.rev {
		c.entries[e.Key()] = n
	}
}

// Get returns key's value, its revision and whether it exists.
func (c *Watched[T]) Get(ctx context.Context, key string) (T, uint64, bool, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && time.Since(e.readAt) < WatchedTTL {
		c.mu.Unlock()
		return e.value, e.rev, e.found, nil
	}
	if _, ok := c.reading[key]; ok {
		// Another reader of this key is under way; it keeps the cache.
		c.mu.Unlock()
		v, rev, err := Get[T](ctx, c.kv, key)
		return v, rev, err == nil, ignoreNotFound(err)
	}
	pending := &watchedEntry[T]{}
	c.reading[key] = pending
	c.mu.Unlock()

	v, rev, err := Get[T](ctx, c.kv, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reading, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return v, 0, false, err
	}
	read := watchedEntry[T]{value: v, found: err == nil, rev: rev, readAt: time.Now()}
	if pending.rev > rev {
		read = *pending // the watch brought a newer one while we read
	}
	for k := range c.entries { // map order: an arbitrary victim
		if len(c.entries) < c.max {
			break
		}
		delete(c.entries, k)
	}
	c.entries[key] = read
	return read.value, read.rev, read.found, nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
