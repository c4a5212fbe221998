package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/store"
)

// countingKV counts the reads that reach the bucket.
type countingKV struct {
	jetstream.KeyValue
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

// add puts x into the set under key, or says there is nothing to do.
func add(ctx context.Context, kv jetstream.KeyValue, c *store.Cache, key, x string) (wrote bool, err error) {
	_, _, wrote, err = store.UpdateCached(ctx, kv, key, c, func(v *[]string, _ bool) error {
		if slices.Contains(*v, x) {
			return store.ErrUnchanged
		}
		*v = append(*v, x)
		return nil
	})
	return wrote, err
}

func TestCachedUpdatesReadOnlyOnAMiss(t *testing.T) {
	st := setup(t)
	ctx := context.Background()
	kv := &countingKV{KeyValue: st.Users}
	c := store.NewCache(1 << 20)
	for _, x := range []string{"a", "b", "c"} {
		if wrote, err := add(ctx, kv, c, "k", x); err != nil || !wrote {
			t.Fatalf("add %s: wrote %v, %v", x, wrote, err)
		}
	}
	if n := kv.gets.Load(); n != 1 {
		t.Fatalf("%d reads for three updates of one key, want 1 (the first)", n)
	}
	got, _, _ := store.Get[[]string](ctx, st.Users, "k")
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("stored %v", got)
	}
}

// TestAStaleCachedCopyLosesNothing: another writer changed the key behind
// the cache; the compare-and-set fails, the update reads and reapplies.
func TestAStaleCachedCopyLosesNothing(t *testing.T) {
	st := setup(t)
	ctx := context.Background()
	c := store.NewCache(1 << 20)
	if _, err := add(ctx, st.Users, c, "k", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := add(ctx, st.Users, nil, "k", "b"); err != nil { // behind the cache's back
		t.Fatal(err)
	}
	if wrote, err := add(ctx, st.Users, c, "k", "c"); err != nil || !wrote {
		t.Fatalf("add c: wrote %v, %v", wrote, err)
	}
	got, _, _ := store.Get[[]string](ctx, st.Users, "k")
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("stored %v, want a b c", got)
	}
}

// TestAStaleCachedCopyIsNotBelievedThatNothingIsToDo: the cache says "a"
// is there, but another writer removed it; the update must put it back.
func TestAStaleCachedCopyIsNotBelievedThatNothingIsToDo(t *testing.T) {
	st := setup(t)
	ctx := context.Background()
	c := store.NewCache(1 << 20)
	if _, err := add(ctx, st.Users, c, "k", "a"); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := store.Update(ctx, st.Users, "k", func(v *[]string, _ bool) error { *v = nil; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := add(ctx, st.Users, c, "k", "a"); err != nil || !wrote {
		t.Fatalf("add a again: wrote %v, %v; want a write", wrote, err)
	}
	got, _, _ := store.Get[[]string](ctx, st.Users, "k")
	if !slices.Equal(got, []string{"a"}) {
		t.Fatalf("stored %v, want a", got)
	}
}

// TestADeletedKeyIsNotResurrectedFromTheCache: a deletion (or a purge)
// moves the key's revision, so the cached copy no longer writes.
func TestADeletedKeyIsNotResurrectedFromTheCache(t *testing.T) {
	st := setup(t)
	ctx := context.Background()
	c := store.NewCache(1 << 20)
	if _, err := add(ctx, st.Users, c, "k", "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.Users.Purge(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	var sawExisting bool
	_, _, _, err := store.UpdateCached(ctx, st.Users, "k", c, func(v *[]string, exists bool) error {
		sawExisting = exists
		*v = append(*v, "b")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := store.Get[[]string](ctx, st.Users, "k")
	if !slices.Equal(got, []string{"b"}) || sawExisting {
		t.Fatalf("stored %v (last attempt saw it existing: %v), want b from a fresh start", got, sawExisting)
	}
}

func TestCacheStaysWithinItsBound(t *testing.T) {
	st := setup(t)
	ctx := context.Background()
	c := store.NewCache(200)
	for i := range 50 {
		if _, err := add(ctx, st.Users, c, fmt.Sprintf("k%d", i), "0123456789"); err != nil {
			t.Fatal(err)
		}
	}
	// Each value is 14 bytes (["0123456789"]): at most 14 fit in 200.
	if n := c.Len(); n == 0 || n > 200/14 {
		t.Fatalf("%d entries cached, want 1..%d", n, 200/14)
	}
	c.Reset()
	if n := c.Len(); n != 0 {
		t.Fatalf("%d entries after Reset", n)
	}
}
