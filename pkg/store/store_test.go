package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
)

func setup(t *testing.T) *store.Store {
	t.Helper()
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.Setup(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestConcurrentUpdatesLoseNothing: compare-and-set retries make concurrent
// read-modify-writes of one key serial.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	st := setup(t)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, _, _, err := store.Update(context.Background(), st.Users, "counter", func(v *map[string]int, _ bool) error {
					if *v == nil {
						*v = map[string]int{}
					}
					(*v)["n"]++
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, _, err := store.Get[map[string]int](context.Background(), st.Users, "counter")
	if err != nil || got["n"] != writers*each {
		t.Fatalf("counter = %v (%v), want %d", got["n"], err, writers*each)
	}
}

func TestUnchangedWritesNothing(t *testing.T) {
	st := setup(t)
	_, rev1, wrote, err := store.Update(context.Background(), st.Users, "k", func(v *map[string]int, _ bool) error {
		*v = map[string]int{"a": 1}
		return nil
	})
	if err != nil || !wrote {
		t.Fatal(err)
	}
	_, rev2, wrote, err := store.Update(context.Background(), st.Users, "k", func(v *map[string]int, _ bool) error {
		return store.ErrUnchanged
	})
	if err != nil || wrote || rev2 != rev1 {
		t.Fatalf("unchanged update wrote=%v rev %d→%d err %v", wrote, rev1, rev2, err)
	}
}

func TestKeysRoundTripIdsThatKVKeysCannotHold(t *testing.T) {
	for _, id := range []string{"plain", "ann@example", "!members-abc", "a@b!c"} {
		if got := store.ID(store.Key(id)); got != id {
			t.Errorf("ID(Key(%q)) = %q", id, got)
		}
	}
	if got := store.ChannelCID(store.ChannelKey("messaging", "!members-x")); got != "messaging:!members-x" {
		t.Errorf("ChannelCID = %q", got)
	}
}

func TestMemberKeysNameTheirChannelAndUser(t *testing.T) {
	for _, tc := range []struct{ typ, id, user, key string }{
		{"messaging", "general", "ann", "messaging.general.ann"},
		{"messaging", "!members-ab", "bob@x_io", ""},
		{"team", "room@home", "!cat", "team.room=40home.=21cat"},
	} {
		key := store.MemberKey(tc.typ, tc.id, tc.user)
		if tc.key != "" && key != tc.key {
			t.Errorf("MemberKey(%q, %q, %q) = %q, want %q", tc.typ, tc.id, tc.user, key, tc.key)
		}
		cid, user, ok := store.MemberOf(key)
		if !ok || cid != tc.typ+":"+tc.id || user != tc.user {
			t.Errorf("MemberOf(%q) = %q, %q, %v; want %s:%s, %s", key, cid, user, ok, tc.typ, tc.id, tc.user)
		}
	}
	for _, key := range []string{"messaging.general", "a.b.c.d", "a..c", "genesis"} {
		if cid, user, ok := store.MemberOf(key); ok {
			t.Errorf("MemberOf(%q) = %q, %q: not a member key", key, cid, user)
		}
	}
}
