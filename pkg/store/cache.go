package store

import (
	"sync"
	"sync/atomic"
)

// Cache remembers the last value and revision an Update read or wrote per
// key, so the next Update of that key goes straight to its compare-and-set
// instead of reading first. It is only ever a guess: a compare-and-set on a
// stale revision fails, and Update then reads and tries again. A cached
// value that makes the update a no-op is never believed either (it may be
// stale), so nothing is skipped on its word.
//
// A bucket deleted and created again restarts its revisions, so a stale
// guess could match by chance: whoever finds the bucket recreated must call
// Reset.
//
// Memory is bounded: past maxBytes of values, arbitrary entries go.
type Cache struct {
	mu       sync.Mutex
	entries  map[string]cached
	bytes    int
	maxBytes int
	// conflicts counts compare-and-sets lost to another writer, retries
	// every update tried again (after a conflict, or a stale copy).
	conflicts, retries atomic.Uint64
}

// Conflicts is how many compare-and-sets of updates through c failed: the
// key had moved on (another writer, or a stale cached copy); each update was
// tried again.
func (c *Cache) Conflicts() uint64 { return c.conflicts.Load() }

// Retries is how many times an update through c was tried again: after a
// conflict, or when the cached copy turned out stale.
func (c *Cache) Retries() uint64 { return c.retries.Load() }

// retried counts one retry, and a conflict when conflict is set.
func (c *Cache) retried(conflict bool) {
	if c == nil {
		return
	}
	c.retries.Add(1)
	if conflict {
		c.conflicts.Add(1)
	}
}

type cached struct {
	value []byte
	rev   uint64
}

// NewCache returns a cache holding at most about maxBytes of values.
func NewCache(maxBytes int) *Cache {
	return &Cache{entries: map[string]cached{}, maxBytes: maxBytes}
}

func (c *Cache) get(key string) ([]byte, uint64, bool) {
	if c == nil {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e.value, e.rev, ok
}

func (c *Cache) put(key string, value []byte, rev uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		if old.rev > rev {
			return // a newer one is known already
		}
		c.bytes -= len(old.value)
	}
	for k, e := range c.entries { // map order: an arbitrary victim
		if c.bytes+len(value) <= c.maxBytes {
			break
		}
		delete(c.entries, k)
		c.bytes -= len(e.value)
	}
	c.entries[key] = cached{value: value, rev: rev}
	c.bytes += len(value)
}

func (c *Cache) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.bytes -= len(e.value)
		delete(c.entries, key)
	}
}

// Reset forgets everything.
func (c *Cache) Reset() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.bytes = 0
}

// Len is how many keys are cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
