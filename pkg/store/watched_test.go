package store

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/natsserver"
)

type profile struct {
	Name string `json:"name"`
}

func watchedBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// hookedKV counts reads and runs a hook after each, before it returns.
type hookedKV struct {
	jetstream.KeyValue
	gets      atomic.Int64
	afterRead func()
}

func (h *hookedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	h.gets.Add(1)
	e, err := h.KeyValue.Get(ctx, key)
	if h.afterRead != nil {
		h.afterRead()
	}
	return e, err
}

func put(t *testing.T, kv jetstream.KeyValue, key, name string) uint64 {
	t.Helper()
	b, _ := json.Marshal(profile{Name: name})
	rev, err := kv.Put(t.Context(), key, b)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// eventually polls cond with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestWatchedReadsOnceThenFollowsTheWatch(t *testing.T) {
	kv := &hookedKV{KeyValue: watchedBucket(t)}
	c, err := NewWatched[profile](t.Context(), kv, 100)
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, "ann", "Ann")
	for range 3 {
		v, _, found, err := c.Get(t.Context(), "ann")
		if err != nil || !found || v.Name != "Ann" {
			t.Fatalf("Get = %+v %v %v", v, found, err)
		}
	}
	if n := kv.gets.Load(); n != 1 {
		t.Fatalf("%d reads for three Gets, want 1", n)
	}
	rev := put(t, kv, "ann", "Anne")
	eventually(t, "the watch brings the new name", func() bool {
		v, r, _, _ := c.Get(t.Context(), "ann")
		return v.Name == "Anne" && r == rev
	})
	if err := kv.Delete(t.Context(), "ann"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch brings the deletion", func() bool {
		_, _, found, _ := c.Get(t.Context(), "ann")
		return !found
	})
	if n := kv.gets.Load(); n != 1 {
		t.Fatalf("%d reads, want still 1: changes come from the watch", n)
	}
	// A key read while missing is cached as missing, and its creation
	// arrives through the watch.
	if _, _, found, _ := c.Get(t.Context(), "bob"); found {
		t.Fatal("bob found before he exists")
	}
	put(t, kv, "bob", "Bob")
	eventually(t, "the watch brings the creation", func() bool {
		v, _, found, _ := c.Get(t.Context(), "bob")
		return found && v.Name == "Bob"
	})
	if n := kv.gets.Load(); n != 2 {
		t.Fatalf("%d reads, want 2", n)
	}
}

// TestWatchedKeepsAChangeThatOvertakesARead: a change the watch brings
// while the key is being read wins over the (older) value read.
func TestWatchedKeepsAChangeThatOvertakesARead(t *testing.T) {
	kv := &hookedKV{KeyValue: watchedBucket(t)}
	c, err := NewWatched[profile](t.Context(), kv, 100)
	if err != nil {
		t.Fatal(err)
	}
	put(t, kv, "ann", "Ann")
	var newer uint64
	kv.afterRead = func() {
		kv.afterRead = nil
		newer = put(t, kv.KeyValue, "ann", "Anne")
		eventually(t, "the watch delivers the change during the read", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.reading["ann"].rev == newer
		})
	}
	v, rev, _, err := c.Get(t.Context(), "ann")
	if err != nil || v.Name != "Anne" || rev != newer {
		t.Fatalf("Get = %q rev %d (%v), want Anne rev %d", v.Name, rev, err, newer)
	}
	if e := c.entries["ann"]; e.value.Name != "Anne" {
		t.Fatalf("cached %q, want the newer Anne", e.value.Name)
	}
}

func TestWatchedStaysWithinItsBound(t *testing.T) {
	kv := watchedBucket(t)
	c, err := NewWatched[profile](t.Context(), kv, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		key := string(rune('a'+i%26)) + string(rune('a'+i/26))
		if _, _, _, err := c.Get(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.entries); n != 10 {
		t.Fatalf("%d keys cached, want 10", n)
	}
}
