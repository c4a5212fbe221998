package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
)

// kvEnv is a NATS server with the buckets, for index tests.
type kvEnv struct {
	t  *testing.T
	js jetstream.JetStream
	st *store.Store
}

func newKVEnv(t *testing.T) *kvEnv {
	t.Helper()
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Setup(t.Context(), js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &kvEnv{t: t, js: js, st: st}
}

func (e *kvEnv) open(dir string) *index {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ix, err := openIndex(ctx, dir, "api-t", slog.New(slog.DiscardHandler), e.st.Users, e.st.Presence, e.st.Channels, e.st.Members)
	if err != nil {
		e.t.Fatal(err)
	}
	return ix
}

func (e *kvEnv) put(kv jetstream.KeyValue, key string, v any) {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(e.t.Context(), key, b); err != nil {
		e.t.Fatal(err)
	}
}

// users answers a users query from ix as a server-side caller.
func usersOf(t *testing.T, ix *index, filterJSON string) []string {
	t.Helper()
	p := parseQuery(t, "QueryUsers", filterJSON, `[{"field": "id"}]`, 100, 0)
	var got []string
	_ = ix.view(func(tx *bolt.Tx) error {
		got = hitKeys(p.find(tx, usersTable, nil, userLoader(tx, p, caller{server: true})))
		return nil
	})
	return got
}

func TestARestartedIndexResumesAndAppliesWhatChangedWhileDown(t *testing.T) {
	e := newKVEnv(t)
	dir := t.TempDir()
	for i := range 50 {
		e.put(e.st.Users, fmt.Sprintf("u%02d", i), model.User{ID: fmt.Sprintf("u%02d", i), Role: "user", Name: fmt.Sprintf("Old Name %d", i)})
	}
	for _, id := range []string{"a", "b"} {
		e.put(e.st.Channels, store.ChannelKey("messaging", id), model.Channel{Type: "messaging", ID: id})
		e.put(e.st.Members, store.MemberKey("messaging", id, "u01"), model.Member{UserID: "u01"})
	}

	ix := e.open(dir)
	if resumed, why, _ := ix.stats(); resumed || why != "new index file" {
		t.Fatalf("first start: resumed %v (%q), want a new file built", resumed, why)
	}
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}

	// While the node is down: a deletion, an update, a presence change and a
	// channel deletion.
	if err := e.st.Users.Delete(t.Context(), "u00"); err != nil {
		t.Fatal(err)
	}
	e.put(e.st.Users, "u01", model.User{ID: "u01", Role: "admin", Name: "Renamed"})
	e.put(e.st.Presence, "u02", model.Presence{Conns: map[string]model.Conn{"gw~1~1": {Node: "gw", Epoch: 1}}, Online: true, LastActive: time.Now()})
	// The channels bucket keeps one entry per key: after these, the entries
	// following the file's revision are gone (replaced), which is no reason
	// to rebuild.
	b := model.Channel{Type: "messaging", ID: "b", Custom: map[string]any{"v": 2.0}}
	e.put(e.st.Channels, store.ChannelKey("messaging", "b"), b)
	if err := e.st.Channels.Delete(t.Context(), store.ChannelKey("messaging", "a")); err != nil {
		t.Fatal(err)
	}
	b.Custom["v"] = 3.0
	e.put(e.st.Channels, store.ChannelKey("messaging", "b"), b)
	info, err := streamInfo(t.Context(), e.st.Channels)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq <= 3 {
		t.Fatalf("channels stream starts at %d, want past the file's revision 2 + 1", info.State.FirstSeq)
	}

	ix = e.open(dir)
	defer ix.close()
	resumed, why, caught := ix.stats()
	if !resumed {
		t.Fatalf("restart rebuilt the index (%s), want it resumed", why)
	}
	want := map[string]int{store.BucketUsers: 2, store.BucketPresence: 1, store.BucketChannels: 2}
	for b, n := range want {
		if caught[b] != n {
			t.Errorf("resumed %s with %d entries, want only the %d changed while down (all: %v)", b, caught[b], n, caught)
		}
	}
	if got := usersOf(t, ix, `{"id": {"$in": ["u00", "u03"]}}`); !slices.Equal(got, []string{"u03"}) {
		t.Errorf("u00 was deleted while down, query found %v", got)
	}
	if got := usersOf(t, ix, `{"name": {"$autocomplete": "ren"}}`); !slices.Equal(got, []string{"u01"}) {
		t.Errorf("autocomplete of the new name: %v, want u01", got)
	}
	if got := usersOf(t, ix, `{"name": {"$autocomplete": "old name 1"}, "id": "u01"}`); len(got) != 0 {
		t.Errorf("u01's old name still found: %v", got)
	}
	if got := usersOf(t, ix, `{"role": "admin"}`); !slices.Equal(got, []string{"u01"}) {
		t.Errorf("role admin: %v, want u01", got)
	}
	if got := usersOf(t, ix, `{"online": true}`); !slices.Equal(got, []string{"u02"}) {
		t.Errorf("online: %v, want u02", got)
	}
	p := parseQuery(t, "QueryChannels", `{"members": {"$in": ["u01"]}, "v": 3}`, ``, 10, 0)
	_ = ix.view(func(tx *bolt.Tx) error {
		if got := hitKeys(p.find(tx, channelsTable, nil, channelLoader(tx, p, caller{server: true}, nil, nil))); !slices.Equal(got, []string{"messaging:b"}) {
			t.Errorf("u01's channels: %v, want only messaging:b", got)
		}
		return nil
	})
	// A change after the restart still flows in.
	e.put(e.st.Users, "u99", model.User{ID: "u99", Role: "admin"})
	if err := ix.sync(t.Context(), store.BucketUsers); err != nil {
		t.Fatal(err)
	}
	if got := usersOf(t, ix, `{"role": "admin"}`); !slices.Equal(got, []string{"u01", "u99"}) {
		t.Errorf("role admin after a new write: %v", got)
	}
}

func TestAnIndexIsRebuiltWhenItCannotBeTrusted(t *testing.T) {
	e := newKVEnv(t)
	for i := range 5 {
		e.put(e.st.Users, fmt.Sprintf("u%d", i), model.User{ID: fmt.Sprintf("u%d", i), Role: "user"})
	}
	editMeta := func(dir string, kv map[string]string) {
		db, err := bolt.Open(filepath.Join(dir, "api-api-t.bolt"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			for k, v := range kv {
				if err := tx.Bucket(metaBucket).Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		change  func(dir string)
		rebuilt string // "" for resumed
	}{
		{"a clean stop resumes", func(string) {}, ""},
		{"another index layout rebuilds", func(dir string) { editMeta(dir, map[string]string{"version": "old"}) }, "index layout"},
		{"a crash of the process alone resumes", func(dir string) {
			if bootID() == "" {
				t.Skip("no boot id on this system")
			}
			editMeta(dir, map[string]string{"clean": "0"})
		}, ""},
		{"a crash of the machine rebuilds", func(dir string) { editMeta(dir, map[string]string{"clean": "0", "boot": "another-boot"}) }, "machine restarted"},
		{"a recreated bucket rebuilds", func(string) {
			if err := e.js.DeleteKeyValue(t.Context(), store.BucketChannels); err != nil {
				t.Fatal(err)
			}
			st, err := store.Setup(t.Context(), e.js, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			e.st.Channels = st.Channels
		}, "was recreated"},
		{"a purged bucket rebuilds", func(string) {
			s, err := e.js.Stream(t.Context(), "KV_"+store.BucketUsers)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Purge(t.Context(), jetstream.WithPurgeSubject("$KV."+store.BucketUsers+".u0")); err != nil {
				t.Fatal(err)
			}
		}, "entries were purged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := e.open(dir).close(); err != nil {
				t.Fatal(err)
			}
			tc.change(dir)
			ix := e.open(dir)
			defer ix.close()
			resumed, why, _ := ix.stats()
			switch {
			case tc.rebuilt == "" && !resumed:
				t.Errorf("rebuilt (%s), want resumed", why)
			case tc.rebuilt != "" && (resumed || !strings.Contains(why, tc.rebuilt)):
				t.Errorf("resumed %v, why %q; want rebuilt because %q", resumed, why, tc.rebuilt)
			}
			if got, want := len(usersOf(t, ix, `{}`)), 5; tc.name == "a purged bucket rebuilds" && got != want-1 {
				t.Errorf("after the purge the index holds %d users, want %d", got, want-1)
			}
		})
	}
}

func TestResumableNeedsTheRevisionsAfterTheFile(t *testing.T) {
	m := newMemIndex(t)
	_ = m.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		_ = meta.Put(keyClean, []byte("1"))
		return meta.Put(revKey(store.BucketUsers), uintBytes(10))
	})
	infos := func(first, last uint64, cfg jetstream.StreamConfig) map[string]*jetstream.StreamInfo {
		out := map[string]*jetstream.StreamInfo{}
		for _, n := range m.names {
			out[n] = &jetstream.StreamInfo{}
		}
		out[store.BucketUsers] = &jetstream.StreamInfo{Config: cfg, State: jetstream.StreamState{FirstSeq: first, LastSeq: last}}
		return out
	}
	kv := jetstream.StreamConfig{MaxMsgsPerSubject: 1, MaxMsgs: -1, MaxBytes: -1}
	aged := kv
	aged.MaxAge = time.Hour
	for _, tc := range []struct {
		name        string
		first, last uint64
		cfg         jetstream.StreamConfig
		want        string
	}{
		{"the next revision is kept", 5, 20, aged, ""},
		{"a KV bucket drops only replaced entries", 15, 20, kv, ""},
		{"entries past the file may have aged out", 15, 20, aged, "no longer holds"},
		{"the bucket is behind the file", 1, 8, kv, "ends at revision 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.resumable(infos(tc.first, tc.last, tc.cfg)); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("resumable: %q, want %q", got, tc.want)
			}
		})
	}
}
