package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/token"
)

// Size of the benchmark's data set.
const (
	benchUsers       = 100_000
	benchChannels    = 20_000
	benchHeavyUsers  = 100 // each a member of benchHeavyChans channels
	benchHeavyChans  = 200
	benchOnlineShare = 10 // percent of users online
	// The big channel: benchBigMembers members, benchBigOnline of them
	// online (and visible).
	benchBig        = "big"
	benchBigMembers = 10_000
	benchBigOnline  = 1_000
)

var (
	benchFirst = strings.Fields(`james mary robert patricia john jennifer michael linda david elizabeth william barbara
		richard susan joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony
		margaret mark sandra donald ashley steven kimberly paul emily andrew donna joshua michelle kenneth carol kevin
		amanda brian melissa george deborah timothy stephanie ronald rebecca edward sharon jason laura jeffrey cynthia
		ryan kathleen jacob amy gary angela nicholas shirley eric anna jonathan brenda stephen pamela larry emma justin
		nicole scott helen brandon samantha benjamin katherine samuel christine gregory debra alexander rachel frank
		carolyn patrick janet raymond catherine jack maria dennis heather jerry diane tyler ruth aaron julie josé zoë`)
	benchLast = strings.Fields(`smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez
		lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark
		ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker
		hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins reyes
		stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos
		kim cox ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo
		sanders patel myers long ross foster jimenez o'brien müller`)
)

// benchEnv is a NATS server holding the data set and two api nodes on it.
type benchEnv struct {
	b      *testing.B
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store.Store
	cfg    Config
	dirA   string
	a, bb  *Server
	admin  string
	r      *rand.Rand
	userID func(i int) string
	timing bool          // count the time spent serving requests
	spent  time.Duration // since timing began
	big    []string      // the members of the big channel, in joining order
}

func benchUserID(i int) string { return fmt.Sprintf("u%06d", i) }

// natsDirEnv names the store of the NATS server process the benchmark runs.
const natsDirEnv = "PRESENCE_BENCH_NATS_DIR"

// TestBenchNATSServer is not a test: it is the NATS server of BenchmarkIndex,
// run as a child process so that its CPU and garbage collection are not the
// api node's (as in a deployment). It prints the client URL and serves until
// its stdin closes.
func TestBenchNATSServer(t *testing.T) {
	dir := os.Getenv(natsDirEnv)
	if dir == "" {
		t.Skip("the NATS server process of BenchmarkIndex")
	}
	ns, err := natsserver.Start(natsserver.Options{Addr: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("NATS_URL=" + ns.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ns.Shutdown()
	ns.WaitForShutdown()
}

// startNATSProcess runs TestBenchNATSServer in a child process and returns
// its URL; the process ends with the benchmark.
func startNATSProcess(b *testing.B) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchNATSServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), natsDirEnv+"="+b.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if url, ok := strings.CutPrefix(lines.Text(), "NATS_URL="); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return url
		}
	}
	b.Fatal("the NATS server process did not start")
	return ""
}

// BenchmarkIndex measures queries, restarts and cross-node lag on 100k users
// (with presence) and 20k channels in JetStream KV, plus a channel of 10,000
// members of whom 1,000 are online, indexed by api nodes:
//
//	go test -run '^$' -bench Index -benchtime 2000x ./api/
//
// It reports p50 and p99 of each operation (p50-ms, p99-ms); the DESIGN.md
// targets are in BENCHMARKS.md. Building the data set takes a while, so
// -short skips it.
func BenchmarkIndex(b *testing.B) {
	if testing.Short() {
		b.Skip("builds 100k users and 20k channels; not with -short")
	}
	e := newBenchEnv(b)

	b.Run("sync/users+presence", func(b *testing.B) {
		e.measure(b, func() {
			if err := e.a.idx.sync(b.Context(), store.BucketUsers, store.BucketPresence); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("sync/users+presence-16-concurrent", func(b *testing.B) {
		// Queries arriving together share the revision requests.
		revs := e.a.idx.revs
		before := revs[store.BucketUsers].sent.Load() + revs[store.BucketPresence].sent.Load()
		var mu sync.Mutex
		var lat []time.Duration
		b.SetParallelism(8) // 16 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t0 := time.Now()
				if err := e.a.idx.sync(context.Background(), store.BucketUsers, store.BucketPresence); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
		sent := revs[store.BucketUsers].sent.Load() + revs[store.BucketPresence].sent.Load() - before
		reportLatency(b, lat)
		b.ReportMetric(float64(sent)/float64(len(lat)), "requests/sync")
	})
	b.Run("queryUsers/id-in-100", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			ids := make([]string, 100)
			for i := range ids {
				ids[i] = e.userID(e.r.IntN(benchUsers))
			}
			got := e.queryUsers(e.a, e.admin, map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": ids}}, "limit": 100})
			if len(got) < 95 {
				b.Fatalf("$in of 100 ids found %d users", len(got))
			}
		})
	})
	b.Run("queryUsers/name-autocomplete", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			name := benchFirst[e.r.IntN(len(benchFirst))]
			prefix := string([]rune(name)[:min(3, len([]rune(name)))])
			got := e.queryUsers(e.a, e.admin, map[string]any{"filter_conditions": map[string]any{"name": map[string]any{"$autocomplete": prefix}}})
			if len(got) == 0 {
				b.Fatalf("autocomplete %q found nobody", prefix)
			}
		})
	})
	b.Run("queryUsers/sort-last_active-limit-30", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			got := e.queryUsers(e.a, e.admin, map[string]any{"filter_conditions": map[string]any{},
				"sort": []any{map[string]any{"field": "last_active", "direction": -1}}, "limit": 30})
			if len(got) != 30 {
				b.Fatalf("got %d users", len(got))
			}
		})
	})
	b.Run("queryUsers/online-sort-last_active-limit-30", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			got := e.queryUsers(e.a, e.admin, map[string]any{"filter_conditions": map[string]any{"online": true},
				"sort": []any{map[string]any{"field": "last_active", "direction": -1}}, "limit": 30})
			if len(got) != 30 {
				b.Fatalf("got %d users", len(got))
			}
		})
	})
	b.Run("queryChannels/member-of-200-sort-last_message_at-limit-10", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			u := e.userID(e.r.IntN(benchHeavyUsers))
			got := e.queryChannels(e.a, e.token(u), map[string]any{"filter_conditions": map[string]any{"members": map[string]any{"$in": []any{u}}},
				"sort": []any{map[string]any{"field": "last_message_at", "direction": -1}}, "limit": 10})
			if len(got) != 10 {
				b.Fatalf("got %d channels", len(got))
			}
		})
	})
	b.Run("queryChannels/member-of-200-sort-last_message_at-limit-30", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			u := e.userID(e.r.IntN(benchHeavyUsers))
			got := e.queryChannels(e.a, e.token(u), map[string]any{"filter_conditions": map[string]any{"members": map[string]any{"$in": []any{u}}},
				"sort": []any{map[string]any{"field": "last_message_at", "direction": -1}}, "limit": 30})
			if len(got) != 30 {
				b.Fatalf("got %d channels", len(got))
			}
		})
	})
	// The 10,000-member channel, queried by one of its members.
	bigQuery := func(payload map[string]any) []json.RawMessage {
		payload["type"], payload["id"] = "messaging", benchBig
		raw, _ := json.Marshal(payload)
		var out struct{ Members []json.RawMessage }
		if err := json.Unmarshal(e.call(e.a, "GET", "/members", e.token(e.big[e.r.IntN(len(e.big))]), url.Values{"payload": {string(raw)}}, nil), &out); err != nil {
			b.Fatal(err)
		}
		return out.Members
	}
	b.Run("queryMembers/10k-members-online-sort-last_active-limit-30", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			got := bigQuery(map[string]any{"filter_conditions": map[string]any{"online": true},
				"sort": []any{map[string]any{"field": "last_active", "direction": -1}}, "limit": 30})
			if len(got) != 30 || !strings.Contains(string(got[29]), `"online":true`) {
				b.Fatalf("got %d members", len(got))
			}
		})
	})
	b.Run("queryMembers/10k-members-default-sort-limit-100", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			if got := bigQuery(map[string]any{}); len(got) != 100 {
				b.Fatalf("got %d members", len(got))
			}
		})
	})
	b.Run("queryMembers/10k-members-user_id_gt-cursor-limit-300", func(b *testing.B) {
		sorted := slices.Sorted(slices.Values(e.big))
		e.measureServe(b, func() {}, func() {
			got := bigQuery(map[string]any{"sort": []any{map[string]any{"field": "user_id", "direction": 1}}, "limit": 300,
				"user_id_gt": sorted[e.r.IntN(len(sorted)-300)]})
			if len(got) != 300 {
				b.Fatalf("got %d members", len(got))
			}
		})
	})
	b.Run("queryMembers/10k-members-name-autocomplete-limit-30", func(b *testing.B) {
		e.measureServe(b, func() {}, func() {
			name := benchFirst[e.r.IntN(len(benchFirst))]
			prefix := string([]rune(name)[:min(3, len([]rune(name)))])
			bigQuery(map[string]any{"filter_conditions": map[string]any{"name": map[string]any{"$autocomplete": prefix}}, "limit": 30})
		})
	})
	b.Run("queryMembers/10k-members-sort-name-limit-30", func(b *testing.B) {
		// No index orders members by name: every member is read.
		e.measureServe(b, func() {}, func() {
			if got := bigQuery(map[string]any{"sort": []any{map[string]any{"field": "name", "direction": 1}}, "limit": 30}); len(got) != 30 {
				b.Fatalf("got %d members", len(got))
			}
		})
	})
	b.Run("queryChannel/10k-members-state-first-100", func(b *testing.B) {
		// What a member's channel.watch() gets: the channel, the first 100
		// members and member_count, never the 10,000.
		e.measureServe(b, func() {}, func() {
			var st struct {
				Channel struct {
					MemberCount int `json:"member_count"`
				}
				Members []json.RawMessage
			}
			raw := e.call(e.a, "POST", "/channels/messaging/"+benchBig+"/query", e.token(e.big[e.r.IntN(len(e.big))]), nil, map[string]any{"state": true})
			if err := json.Unmarshal(raw, &st); err != nil || len(st.Members) != 100 || st.Channel.MemberCount != benchBigMembers {
				b.Fatalf("%d members, member_count %d (%v)", len(st.Members), st.Channel.MemberCount, err)
			}
		})
	})
	b.Run("crossNode/kv-write-until-indexed-on-B", func(b *testing.B) {
		// From the moment JetStream acknowledges a write (made here as an
		// api node makes it) until node B's index holds it: how stale a
		// node that did not sync could be.
		ix := e.bb.idx
		i := 0
		var id string
		e.measureAfter(b, func() {
			i++
			id = e.userID(benchUsers - 1 - e.r.IntN(1000))
			raw, _ := json.Marshal(model.User{ID: id, Role: "user", Custom: map[string]any{"n": float64(i)}})
			if _, err := e.st.Users.Put(b.Context(), store.Key(id), raw); err != nil {
				b.Fatal(err)
			}
		}, func() {
			for !e.holds(ix, id, i) {
				ix.mu.Lock()
				ch := ix.changed
				ix.mu.Unlock()
				if e.holds(ix, id, i) {
					break
				}
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					b.Fatalf("node B never indexed write %d", i)
				}
			}
		})
	})
	b.Run("crossNode/query-on-B-after-write-on-A", func(b *testing.B) {
		i := 1 << 20
		var id string
		e.measureServe(b, func() {
			i++
			id = e.userID(benchUsers - 1 - e.r.IntN(1000))
			e.upsert(e.a, id, i)
		}, func() {
			got := e.queryUsers(e.bb, e.admin, map[string]any{"filter_conditions": map[string]any{"id": id}})
			if len(got) != 1 || got[0].N != float64(i) {
				b.Fatalf("node B answered %v right after write %d on node A", got, i)
			}
		})
	})
	for _, changes := range []int{0, 2000, 20000} {
		b.Run(fmt.Sprintf("restart/catch-up-after-%d-changes", changes), func(b *testing.B) {
			e.measureAfter(b, func() {
				if err := e.a.Close(); err != nil {
					b.Fatal(err)
				}
				e.changeWhileDown(changes)
			}, func() {
				e.a = e.start("api-a", e.dirA)
				if resumed, why, _ := e.a.idx.stats(); !resumed {
					b.Fatalf("node A rebuilt its index (%s)", why)
				}
			})
		})
	}
	b.Run("restart/rebuild-from-scratch", func(b *testing.B) {
		e.measureAfter(b, func() {}, func() {
			dir := b.TempDir()
			s := e.start("api-c", dir)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			_ = os.RemoveAll(dir)
		})
	})
}

func newBenchEnv(b *testing.B) *benchEnv {
	began := time.Now()
	natsURL := startNATSProcess(b)
	e := &benchEnv{b: b, r: rand.New(rand.NewPCG(7, 11)), userID: benchUserID, dirA: b.TempDir()}
	var err error
	if e.nc, err = nats.Connect(natsURL); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.nc.Close)
	if e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		b.Fatal(err)
	}
	if e.st, err = store.Setup(b.Context(), e.js, store.Options{}); err != nil {
		b.Fatal(err)
	}
	e.cfg = Config{APIKey: "bench-key", APISecret: "bench-secret"}
	if e.admin, err = token.ForServer(e.cfg.APISecret); err != nil {
		b.Fatal(err)
	}
	e.load()
	loaded := time.Since(began)
	e.a = e.start("api-a", e.dirA)
	built := time.Since(began) - loaded
	e.bb = e.start("api-b", b.TempDir())
	b.Cleanup(func() {
		_ = e.a.Close()
		_ = e.bb.Close()
	})
	b.Logf("data set: %d users, %d channels and one of %d members written to KV in %v; first index build %v", benchUsers, benchChannels, benchBigMembers, loaded.Round(time.Millisecond), built.Round(time.Millisecond))
	return e
}

// load writes the data set straight into the KV buckets' streams.
func (e *benchEnv) load() {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Now().UTC().Add(-365 * 24 * time.Hour)
	var online, offline []string // visible online users, offline ones
	for i := range benchUsers {
		u := model.User{ID: e.userID(i), Role: "user",
			Name:      cases(benchFirst[r.IntN(len(benchFirst))]) + " " + cases(benchLast[r.IntN(len(benchLast))]),
			CreatedAt: base.Add(time.Duration(r.Int64N(int64(300 * 24 * time.Hour)))),
			Custom:    map[string]any{"age": float64(18 + r.IntN(60))}}
		u.UpdatedAt = u.CreatedAt
		switch n := r.IntN(100); {
		case n < 1:
			u.Role = "admin"
		case n < 5:
			u.Role = "moderator"
		}
		if r.IntN(10) < 3 {
			u.Teams = []string{"team-" + fmt.Sprint(r.IntN(20))}
		}
		if r.IntN(50) == 0 {
			u.Invisible = true
		}
		e.publish(store.BucketUsers, store.Key(u.ID), u)
		p := model.Presence{LastActive: base.Add(300*24*time.Hour + time.Duration(r.Int64N(int64(60*24*time.Hour)))), Version: 1}
		if r.IntN(100) < benchOnlineShare {
			p.Conns = map[string]model.Conn{"gw-1~1~" + fmt.Sprint(i): {Node: "gw-1", Epoch: 1, OpenedAt: p.LastActive}}
			p.Online = true
		}
		p.Invisible = u.Invisible
		e.publish(store.BucketPresence, store.Key(u.ID), p)
		switch {
		case i < benchHeavyUsers: // their channels are measured apart
		case p.Online && !u.Invisible:
			online = append(online, u.ID)
		case !p.Online:
			offline = append(offline, u.ID)
		}
	}
	// The big channel: 1,000 online users and 9,000 offline ones, joined in
	// a random order, a second apart.
	e.big = slices.Concat(online[:benchBigOnline], offline[:benchBigMembers-benchBigOnline])
	r.Shuffle(len(e.big), func(i, j int) { e.big[i], e.big[j] = e.big[j], e.big[i] })
	big := model.Channel{Type: "messaging", ID: benchBig, CreatedByID: e.big[0], CreatedAt: base, UpdatedAt: base}
	e.publish(store.BucketChannels, store.ChannelKey(big.Type, big.ID), big)
	for i, u := range e.big {
		at := base.Add(time.Duration(i) * time.Second)
		e.publish(store.BucketMembers, store.MemberKey(big.Type, big.ID, u), model.Member{UserID: u, ChannelRole: roleMember, CreatedAt: at, UpdatedAt: at})
	}
	members := make([][]model.Member, benchChannels)
	for h := range benchHeavyUsers {
		for j := range benchHeavyChans {
			c := (h*benchHeavyChans + j) % benchChannels
			members[c] = append(members[c], model.Member{UserID: e.userID(h), ChannelRole: roleMember, CreatedAt: base, UpdatedAt: base})
		}
	}
	for c := range benchChannels {
		for range 5 + r.IntN(10) {
			members[c] = append(members[c], model.Member{UserID: e.userID(benchHeavyUsers + r.IntN(benchUsers-benchHeavyUsers)), ChannelRole: roleMember, CreatedAt: base, UpdatedAt: base})
		}
		at := base.Add(time.Duration(r.Int64N(int64(300 * 24 * time.Hour))))
		ch := model.Channel{Type: "messaging", ID: fmt.Sprintf("c%05d", c), CreatedByID: members[c][0].UserID, CreatedAt: at, UpdatedAt: at,
			Custom: map[string]any{"name": cases(benchLast[r.IntN(len(benchLast))]) + " team"}}
		e.publish(store.BucketChannels, store.ChannelKey(ch.Type, ch.ID), ch)
		for _, m := range members[c] {
			e.publish(store.BucketMembers, store.MemberKey(ch.Type, ch.ID, m.UserID), m)
		}
	}
	e.flush()
}

func cases(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// publish writes a KV entry without waiting for its ack (flush waits).
func (e *benchEnv) publish(bucket, key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		e.b.Fatal(err)
	}
	if _, err := e.js.PublishAsync("$KV."+bucket+"."+key, b); err != nil {
		e.b.Fatal(err)
	}
}

func (e *benchEnv) flush() {
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		e.b.Fatal("KV writes not acknowledged")
	}
}

// changeWhileDown rewrites n/2 profiles and n/2 presence states (a tenth of
// them deletions), as if during a node's restart.
func (e *benchEnv) changeWhileDown(n int) {
	now := time.Now().UTC()
	for i := range n {
		id := e.userID(benchHeavyUsers + e.r.IntN(benchUsers-benchHeavyUsers))
		switch {
		case i%20 == 0:
			e.publishDelete(store.BucketPresence, store.Key(id))
		case i%2 == 0:
			e.publish(store.BucketUsers, store.Key(id), model.User{ID: id, Role: "user", Name: "Changed " + id, CreatedAt: now, UpdatedAt: now})
		default:
			e.publish(store.BucketPresence, store.Key(id), model.Presence{LastActive: now, Version: 2})
		}
	}
	e.flush()
}

func (e *benchEnv) publishDelete(bucket, key string) {
	msg := nats.NewMsg("$KV." + bucket + "." + key)
	msg.Header.Set("KV-Operation", "DEL")
	if _, err := e.js.PublishMsgAsync(msg); err != nil {
		e.b.Fatal(err)
	}
}

func (e *benchEnv) start(node, dir string) *Server {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := e.cfg
	cfg.NodeName, cfg.IndexDir = node, dir
	s, err := New(ctx, cfg, e.nc, slog.New(slog.DiscardHandler))
	if err != nil {
		e.b.Fatal(err)
	}
	return s
}

func (e *benchEnv) token(user string) string {
	tok, err := token.ForUser(e.cfg.APISecret, user)
	if err != nil {
		e.b.Fatal(err)
	}
	return tok
}

// call serves one request on s in-process. While e.timing, the time spent
// serving it is added to e.spent: that, not building the request or decoding
// the answer, is what the benchmarks measure.
func (e *benchEnv) call(s *Server, method, path, tok string, q url.Values, body any) []byte {
	if q == nil {
		q = url.Values{}
	}
	q.Set("api_key", e.cfg.APIKey)
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = strings.NewReader(string(raw))
	}
	req := httptest.NewRequest(method, path+"?"+q.Encode(), rd)
	req.Header.Set("Authorization", tok)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	t0 := time.Now()
	s.Handler().ServeHTTP(rec, req)
	if e.timing {
		e.spent += time.Since(t0)
	}
	if rec.Code != http.StatusOK {
		e.b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes()
}

// benchUser is what the benchmarks read of a user in an answer.
type benchUser struct {
	ID string  `json:"id"`
	N  float64 `json:"n"`
}

func (e *benchEnv) queryUsers(s *Server, tok string, payload map[string]any) []benchUser {
	raw, _ := json.Marshal(payload)
	var out struct{ Users []benchUser }
	if err := json.Unmarshal(e.call(s, "GET", "/users", tok, url.Values{"payload": {string(raw)}}, nil), &out); err != nil {
		e.b.Fatal(err)
	}
	return out.Users
}

func (e *benchEnv) queryChannels(s *Server, tok string, body map[string]any) []json.RawMessage {
	var out struct{ Channels []json.RawMessage }
	if err := json.Unmarshal(e.call(s, "POST", "/channels", tok, nil, body), &out); err != nil {
		e.b.Fatal(err)
	}
	return out.Channels
}

func (e *benchEnv) upsert(s *Server, id string, n int) {
	e.call(s, "POST", "/users", e.admin, nil, map[string]any{"users": map[string]any{id: map[string]any{"id": id, "n": n}}})
}

// holds reports whether ix has user id's write number n.
func (e *benchEnv) holds(ix *index, id string, n int) bool {
	var u model.User
	_ = ix.view(func(tx *bolt.Tx) error {
		u, _ = readUser(tx, id)
		return nil
	})
	return u.Custom["n"] == float64(n)
}

// measure times op (wall clock) in a loop and reports its p50 and p99.
func (e *benchEnv) measure(b *testing.B, op func()) {
	e.measureAfter(b, func() {}, op)
}

// measureAfter runs prepare untimed before each timed op.
func (e *benchEnv) measureAfter(b *testing.B, prepare, op func()) {
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		prepare()
		b.StartTimer()
		t0 := time.Now()
		op()
		lat = append(lat, time.Since(t0))
	}
	reportLatency(b, lat)
}

// measureServe is measureAfter timing only the requests op makes.
func (e *benchEnv) measureServe(b *testing.B, prepare, op func()) {
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		prepare()
		b.StartTimer()
		e.timing, e.spent = true, 0
		op()
		e.timing = false
		lat = append(lat, e.spent)
	}
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(len(lat)-1, int(float64(len(lat))*p))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
