package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/store"
)

// GetFromLeader answers as a KV Get does: the value, or ErrKeyNotFound for
// a key never written, deleted, purged, or gone with a purge of the whole
// bucket, and ErrStreamNotFound for a deleted bucket.
func TestGetFromLeaderReadsLikeAGet(t *testing.T) {
	st := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	get := func(key string) ([]byte, error) {
		return store.GetFromLeader(ctx, st.JS, store.BucketPresence, key)
	}
	if v, err := get(store.SentinelKey); err != nil || string(v) != store.SentinelGenesis {
		t.Fatalf("sentinel = %q, %v; want %q", v, err, store.SentinelGenesis)
	}
	if _, err := st.Presence.Put(ctx, "ann", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Presence.Put(ctx, "ann", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, err := get("ann"); err != nil || string(v) != "2" {
		t.Fatalf("ann = %q, %v; want the latest value 2", v, err)
	}
	for _, gone := range []struct {
		what string
		do   func() error
	}{
		{"deleted", func() error { return st.Presence.Delete(ctx, "ann") }},
		{"purged", func() error { return st.Presence.Purge(ctx, "ann") }},
	} {
		if _, err := st.Presence.Put(ctx, "ann", []byte("3")); err != nil {
			t.Fatal(err)
		}
		if err := gone.do(); err != nil {
			t.Fatal(err)
		}
		if v, err := get("ann"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("a %s key read %q, %v; want ErrKeyNotFound", gone.what, v, err)
		}
	}
	if _, err := get("nobody"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("a key never written: %v, want ErrKeyNotFound", err)
	}
	s, err := st.JS.Stream(ctx, "KV_"+store.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := get(store.SentinelKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the sentinel after a purge of the bucket: %v, want ErrKeyNotFound", err)
	}
	if err := st.JS.DeleteKeyValue(ctx, store.BucketPresence); err != nil {
		t.Fatal(err)
	}
	if _, err := get(store.SentinelKey); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a deleted bucket: %v, want ErrStreamNotFound", err)
	}
}
