package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// entry is a KV watch entry made up by a test.
type entry struct {
	bucket, key string
	value       []byte
	rev         uint64
	op          jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return e.bucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

// memIndex is an index without NATS, fed by feed.
type memIndex struct {
	*index
	t   testing.TB
	rev uint64
}

func newMemIndex(t testing.TB) *memIndex {
	t.Helper()
	ix := &index{log: slog.New(slog.DiscardHandler), applied: map[string]uint64{}, changed: make(chan struct{}), caughtUp: map[string]int{}}
	ix.names = []string{store.BucketUsers, store.BucketPresence, store.BucketChannels, store.BucketMembers}
	db, err := bolt.Open(filepath.Join(t.TempDir(), "ix.bolt"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ix.db = db
	infos := map[string]*jetstream.StreamInfo{}
	for _, n := range ix.names {
		infos[n] = &jetstream.StreamInfo{}
	}
	if err := ix.reset(infos); err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(metaBucket).Put(keyBuilt, []byte("1")) })
	return &memIndex{index: ix, t: t}
}

// feed applies puts (a value) and deletes (nil) to bucket in one batch.
func (m *memIndex) feed(bucket string, kv map[string]any) {
	m.t.Helper()
	var batch []jetstream.KeyValueEntry
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range kv {
			if !yield(k) {
				return
			}
		}
	}) {
		m.rev++
		e := entry{bucket: bucket, key: k, rev: m.rev, op: jetstream.KeyValueDelete}
		if v := kv[k]; v != nil {
			b, err := json.Marshal(v)
			if err != nil {
				m.t.Fatal(err)
			}
			e.value, e.op = b, jetstream.KeyValuePut
		}
		batch = append(batch, e)
	}
	if err := m.apply(bucket, batch); err != nil {
		m.t.Fatal(err)
	}
}

// query parses a test query the way the handlers do.
func parseQuery(t *testing.T, op string, filterJSON, sortJSON string, limit, offset int) parsed {
	t.Helper()
	q := query{Filter: json.RawMessage(filterJSON), Sort: json.RawMessage(sortJSON), Limit: &limit, Offset: &offset}
	def, maxLimit, sort := DefaultUsersLimit, MaxUsersLimit, defaultUserSort
	switch op {
	case "QueryChannels":
		def, maxLimit, sort = DefaultChannelsLimit, MaxChannelsLimit, defaultChannelSort
	case "QueryMembers":
		def, maxLimit, sort = DefaultMemberLimit, MaxMemberLimit, defaultMemberSort
	}
	p, err := q.parse(op, def, maxLimit)
	if err != nil {
		t.Fatalf("%s %s: %v", filterJSON, sortJSON, err)
	}
	if len(p.sort) == 0 {
		p.sort = sort
	}
	return p
}

// userLoader is queryUsers' loader.
func userLoader(tx *bolt.Tx, p parsed, cl caller) loader {
	return func(id string, raw []byte) (filter.Map, bool) {
		var u model.User
		if json.Unmarshal(raw, &u) != nil {
			return nil, false
		}
		u.ID = id
		doc := filter.Map(userView(u, readPresence(tx, id), cl.viewerOf(id)))
		return doc, p.filter.Match(doc)
	}
}

// openTypes are the channel types with open reads in these tests, as by
// default.
var openTypes = []string{"livestream"}

// scanAll is the answer without any index: every record, matched and paged.
func scanAll(tx *bolt.Tx, t *table, p parsed, load loader) []string {
	var hits []hit
	_ = tx.Bucket([]byte(t.data)).ForEach(func(k, raw []byte) error {
		id := t.idOf(string(k))
		if doc, ok := load(id, raw); ok {
			hits = append(hits, hit{key: id, doc: doc})
		}
		return nil
	})
	return hitKeys(p.page(hits))
}

func hitKeys(hits []hit) []string {
	out := []string{}
	for _, h := range hits {
		out = append(out, h.key)
	}
	return out
}

var testWords = []string{"ann", "anna", "bob", "lee", "smith", "jones", "zoë", "Émile", "o'neil", "li", "x-ray", "42", "ann-marie"}

// randomData fills m with users, presence states, channels and their
// members (the first channel with most users), then changes and deletes
// some, so the index holds entries of every kind of history: members whose
// user is gone, members of a deleted channel.
func randomData(m *memIndex, r *rand.Rand, nUsers, nChannels int) (users, cids []string) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	user := func(i int) (string, map[string]any) {
		id := fmt.Sprintf("u%03d", i)
		if i%17 == 0 {
			id += "@x"
		}
		if i%23 == 0 {
			id = "!" + id
		}
		u := map[string]any{"id": id, "role": []string{"user", "user", "admin", "moderator"}[r.IntN(4)],
			"created_at": base.Add(time.Duration(r.IntN(1000)) * time.Minute), "updated_at": base.Add(time.Duration(r.IntN(1000)) * time.Hour)}
		if r.IntN(5) > 0 {
			var parts []string
			for range 1 + r.IntN(3) {
				parts = append(parts, testWords[r.IntN(len(testWords))])
			}
			u["name"] = strings.Join(parts, []string{" ", "  ", ", ", "-"}[r.IntN(4)])
		}
		if r.IntN(3) == 0 {
			u["teams"] = []string{"red", "blue", "green"}[:1+r.IntN(3)]
		}
		if r.IntN(2) == 0 {
			u["age"] = r.IntN(60)
		}
		if r.IntN(8) == 0 {
			u["invisible"] = true
		}
		if r.IntN(10) == 0 {
			u["created_at"] = nil // no created_at: sorts last
		}
		return id, u
	}
	presence := func() map[string]any {
		p := map[string]any{}
		if r.IntN(3) > 0 {
			p["last_active"] = base.Add(time.Duration(r.IntN(500)) * time.Second)
		}
		if r.IntN(2) == 0 {
			p["conns"] = map[string]any{"gw~1~1": map[string]any{"node": "gw", "epoch": 1, "opened_at": base}}
			p["online"] = true
		}
		if r.IntN(6) == 0 {
			p["invisible"] = true
		}
		return p
	}
	us, ps := map[string]any{}, map[string]any{}
	for i := range nUsers {
		id, u := user(i)
		users = append(users, id)
		us[store.Key(id)] = u
		if r.IntN(4) > 0 {
			ps[store.Key(id)] = presence()
		}
	}
	ps["ghost"] = presence() // presence of a user without a profile
	m.feed(store.BucketUsers, us)
	m.feed(store.BucketPresence, ps)
	cs, ms := map[string]any{}, map[string]any{}
	member := func(typ, id, u string) {
		m := model.Member{UserID: u, ChannelRole: []string{roleMember, roleMember, roleModerator}[r.IntN(3)],
			CreatedAt: base.Add(time.Duration(r.IntN(50)) * time.Minute), UpdatedAt: base.Add(time.Duration(r.IntN(50)) * time.Hour)}
		switch r.IntN(5) {
		case 0:
			m.Custom = map[string]any{"code": []string{"006", "007"}[r.IntN(2)]}
		case 1:
			// Custom fields named as the user's never stand for them.
			m.Custom = map[string]any{"name": "ann", "online": true, "user.role": "admin"}
		}
		ms[store.MemberKey(typ, id, u)] = m
	}
	for i := range nChannels {
		typ := []string{"messaging", "team", "livestream"}[r.IntN(3)]
		id := fmt.Sprintf("c%03d", i)
		var members []string
		for _, u := range users {
			if i == 0 && r.IntN(5) > 0 || r.IntN(nUsers) < 6 {
				members = append(members, u)
				member(typ, id, u)
			}
		}
		ch := model.Channel{Type: typ, ID: id, CreatedAt: base.Add(time.Duration(r.IntN(100)) * time.Hour),
			UpdatedAt: base.Add(time.Duration(r.IntN(100)) * time.Hour), Custom: map[string]any{}}
		if len(members) > 0 && r.IntN(3) > 0 {
			ch.CreatedByID = members[0]
		}
		if r.IntN(2) == 0 {
			ch.Custom["name"] = testWords[r.IntN(len(testWords))] + " " + testWords[r.IntN(len(testWords))]
		}
		if r.IntN(2) == 0 {
			ch.Custom["color"] = []string{"red", "green"}[r.IntN(2)]
		}
		cids = append(cids, ch.CID())
		cs[store.ChannelKey(typ, id)] = ch
	}
	m.feed(store.BucketChannels, cs)
	m.feed(store.BucketMembers, ms)
	// History: profile rewrites, presence changes, deletions.
	us, ps, cs = map[string]any{}, map[string]any{}, map[string]any{}
	for i := range nUsers / 5 {
		j := r.IntN(nUsers)
		switch i % 3 {
		case 0:
			_, u := user(j)
			us[store.Key(users[j])] = u
		case 1:
			ps[store.Key(users[j])] = presence()
		default:
			us[store.Key(users[j])] = nil
		}
	}
	m.feed(store.BucketUsers, us)
	m.feed(store.BucketPresence, ps)
	for range nChannels / 5 {
		cs[cidKey(cids[1+r.IntN(len(cids)-1)])] = nil
	}
	m.feed(store.BucketChannels, cs)
	ms = map[string]any{}
	for range nUsers / 5 {
		typ, id, _ := strings.Cut(cids[r.IntN(len(cids))], ":")
		u := users[r.IntN(nUsers)]
		if r.IntN(2) == 0 {
			ms[store.MemberKey(typ, id, u)] = nil
		} else {
			member(typ, id, u)
		}
	}
	m.feed(store.BucketMembers, ms)
	return users, cids
}

// randomUserQuery is a filter and a sort mixing what the index answers with
// what it does not.
func randomUserQuery(r *rand.Rand, users []string) (string, string) {
	pick := func() string { return users[r.IntN(len(users))] }
	conds := []func() string{
		func() string { return fmt.Sprintf(`"id": %q`, pick()) },
		func() string { return fmt.Sprintf(`"id": {"$in": [%q, %q, %q, "nobody"]}`, pick(), pick(), pick()) },
		func() string {
			return fmt.Sprintf(`"role": %q`, []string{"user", "admin", "moderator", "root"}[r.IntN(4)])
		},
		func() string {
			return fmt.Sprintf(`"role": {"$in": [%q, %q]}`, []string{"user", "admin"}[r.IntN(2)], []string{"moderator", "x"}[r.IntN(2)])
		},
		func() string { return fmt.Sprintf(`"online": %v`, r.IntN(2) == 0) },
		func() string {
			return fmt.Sprintf(`"teams": {"$contains": %q}`, []string{"red", "blue", "green"}[r.IntN(3)])
		},
		func() string { return fmt.Sprintf(`"teams": %q`, []string{"red", "blue", "green"}[r.IntN(3)]) },
		func() string {
			w := testWords[r.IntN(len(testWords))]
			rs := []rune(w)
			prefixes := []string{string(rs[:1+r.IntN(len(rs))]), strings.ToUpper(string(rs[:1])), w + " ", w + " l", "zz", "ann-m", "'n", "é"}
			return fmt.Sprintf(`"name": {"$autocomplete": %q}`, prefixes[r.IntN(len(prefixes))])
		},
		func() string { return fmt.Sprintf(`"age": {"$gt": %d}`, r.IntN(60)) },
		func() string { return `"$or": [{"role": "admin"}, {"online": true}]` },
		func() string {
			return fmt.Sprintf(`"$and": [{"role": {"$ne": "user"}}, {"name": {"$autocomplete": %q}}]`, firstRune(testWords[r.IntN(len(testWords))]))
		},
		func() string { return `"invisible": true` },
	}
	var parts []string
	for range r.IntN(3) {
		parts = append(parts, conds[r.IntN(len(conds))]())
	}
	sorts := []string{``, `[]`, `[{"field": "created_at", "direction": -1}]`, `[{"field": "last_active", "direction": -1}]`,
		`[{"field": "last_active", "direction": 1}]`, `[{"field": "id", "direction": -1}]`, `[{"field": "id"}]`,
		`[{"field": "updated_at"}]`, `[{"field": "name"}]`, `[{"field": "last_active", "direction": -1}, {"field": "role"}]`,
		`[{"field": "online", "direction": -1}, {"field": "last_active", "direction": -1}]`}
	return "{" + strings.Join(parts, ", ") + "}", sorts[r.IntN(len(sorts))]
}

func randomChannelQuery(r *rand.Rand, users, cids []string) (string, string) {
	pickU := func() string { return users[r.IntN(len(users))] }
	conds := []func() string{
		func() string { return fmt.Sprintf(`"members": {"$in": [%q]}`, pickU()) },
		func() string { return fmt.Sprintf(`"members": {"$in": [%q, %q]}`, pickU(), pickU()) },
		func() string { return fmt.Sprintf(`"members": {"$contains": %q}`, pickU()) },
		func() string {
			return fmt.Sprintf(`"cid": {"$in": [%q, %q, "bad"]}`, cids[r.IntN(len(cids))], cids[r.IntN(len(cids))])
		},
		func() string { return fmt.Sprintf(`"type": %q`, []string{"messaging", "team", "gaming"}[r.IntN(3)]) },
		func() string { return fmt.Sprintf(`"created_by_id": %q`, pickU()) },
		func() string { return fmt.Sprintf(`"color": %q`, []string{"red", "green"}[r.IntN(2)]) },
		func() string {
			return fmt.Sprintf(`"name": {"$autocomplete": %q}`, firstRune(testWords[r.IntN(len(testWords))]))
		},
		func() string { return fmt.Sprintf(`"member_count": {"$gte": %d}`, r.IntN(8)) },
	}
	var parts []string
	for range r.IntN(3) {
		parts = append(parts, conds[r.IntN(len(conds))]())
	}
	sorts := []string{``, `[{"field": "last_message_at", "direction": -1}]`, `[{"field": "created_at", "direction": -1}]`,
		`[{"field": "created_at"}]`, `[{"field": "cid", "direction": -1}]`, `[{"field": "member_count", "direction": -1}]`,
		`[{"field": "last_updated", "direction": -1}, {"field": "cid"}]`, `[{"field": "updated_at", "direction": 1}]`}
	return "{" + strings.Join(parts, ", ") + "}", sorts[r.IntN(len(sorts))]
}

// TestIndexAnswersLikeAFullScan runs random queries through every plan the
// planner can pick and compares each page with a scan of every record.
func TestIndexAnswersLikeAFullScan(t *testing.T) {
	m := newMemIndex(t)
	r := rand.New(rand.NewPCG(4, 2))
	users, cids := randomData(m, r, 150, 50)
	defer func(l, rc, c int) { loadCost, refCost, collectCap = l, rc, c }(loadCost, refCost, collectCap)
	plans := []struct {
		name               string
		load, ref, collect int
	}{
		{"default costs", loadCost, refCost, collectCap},
		{"walks", 1 << 10, 1 << 20, collectCap},
		{"ordered by refs", 40, 0, collectCap},
		{"fetches", 0, 1 << 20, collectCap},
		{"nothing collected", 1 << 10, 0, 0},
		{"cheap loads", 1, 4, 3},
	}
	for _, plan := range plans {
		loadCost, refCost, collectCap = plan.load, plan.ref, plan.collect
		for i := range 100 {
			callers := []caller{{server: true}, {user: users[r.IntN(len(users))]}}
			cl := pickCaller(callers, i)
			limit, offset := 1+r.IntN(30), []int{0, 0, 1, 5, 40}[r.IntN(5)]
			var f, s, op string
			var tbl *table
			if i%2 == 0 {
				f, s = randomUserQuery(r, users)
				op, tbl = "QueryUsers", usersTable
			} else {
				f, s = randomChannelQuery(r, users, cids)
				op, tbl = "QueryChannels", channelsTable
			}
			p := parseQuery(t, op, f, s, limit, offset)
			_ = m.view(func(tx *bolt.Tx) error {
				var load loader
				var scope []eqTerm
				if tbl == usersTable {
					load = userLoader(tx, p, cl)
				} else {
					load, scope = channelLoader(tx, p, cl, openTypes, nil), readScope(cl, openTypes)
				}
				got := hitKeys(p.find(tx, tbl, scope, load))
				want := scanAll(tx, tbl, p, load)
				if !slices.Equal(got, want) {
					t.Errorf("%s: %s %s filter %s sort %s limit %d offset %d as %+v:\n got %v\nwant %v", plan.name, op, tbl.name, f, s, limit, offset, cl, got, want)
				}
				return nil
			})
		}
	}
}

func pickCaller(cs []caller, i int) caller { return cs[(i/2)%len(cs)] }

func firstRune(s string) string { return string([]rune(s)[:1]) }

func TestSortIndexIsOffWhileAValueCannotBeOrdered(t *testing.T) {
	m := newMemIndex(t)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	chans := map[string]any{}
	for i, custom := range []map[string]any{nil, {"last_message_at": "yesterday"}, nil} {
		ch := model.Channel{Type: "messaging", ID: fmt.Sprint("c", i), CreatedAt: at, UpdatedAt: at, Custom: custom}
		chans[store.ChannelKey(ch.Type, ch.ID)] = ch
	}
	m.feed(store.BucketChannels, chans)
	p := parseQuery(t, "QueryChannels", `{}`, `[{"field": "last_message_at", "direction": -1}]`, 10, 0)
	check := func(wantSortable bool, want []string) {
		t.Helper()
		_ = m.view(func(tx *bolt.Tx) error {
			if got := newReader(tx, channelsTable).sortable("last_message_at"); got != wantSortable {
				t.Errorf("sortable: got %v, want %v", got, wantSortable)
			}
			load := channelLoader(tx, p, caller{server: true}, openTypes, nil)
			if got := hitKeys(p.find(tx, channelsTable, nil, load)); !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			return nil
		})
	}
	check(false, []string{"messaging:c1", "messaging:c0", "messaging:c2"})
	m.feed(store.BucketChannels, map[string]any{store.ChannelKey("messaging", "c1"): nil})
	check(true, []string{"messaging:c0", "messaging:c2"})
}

// dump is every bucket of the index but meta, key by key.
func dump(t *testing.T, ix *index) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = ix.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if string(name) != string(metaBucket) || strings.HasPrefix(string(k), "count/") {
					out[string(name)+" "+string(k)] = string(v)
				}
				return nil
			})
		})
	})
	return out
}

func TestABulkLoadIndexesLikeEntryByEntry(t *testing.T) {
	incremental := newMemIndex(t)
	randomData(incremental, rand.New(rand.NewPCG(9, 9)), 150, 50)
	bulk := newMemIndex(t)
	bulk.staging = map[string]*staged{}
	for _, n := range bulk.names {
		bulk.staging[n] = &staged{vals: map[string][]byte{}}
	}
	randomData(bulk, rand.New(rand.NewPCG(9, 9)), 150, 50)
	if err := bulk.load(); err != nil {
		t.Fatal(err)
	}
	want, got := dump(t, incremental.index), dump(t, bulk.index)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q: bulk has %q, entry by entry %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%q: only in the bulk load", k)
		}
	}
	if len(want) < 1000 {
		t.Errorf("only %d keys compared", len(want))
	}
}
