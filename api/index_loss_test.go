package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// tryUsers runs a server-side queryUsers that may fail while the index is
// rebuilt: the status, and who is online among the users found.
func (e *env) tryUsers(filter map[string]any) (int, map[string]bool) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"filter_conditions": filter, "limit": 100})
	status, out := e.call(req{method: "GET", path: "/users", tok: e.admin, query: url.Values{"payload": {string(b)}}})
	if status != http.StatusOK {
		return status, nil
	}
	got := map[string]bool{}
	for _, u := range out["users"].([]any) {
		m := u.(map[string]any)
		got[m["id"].(string)] = m["online"] == true
	}
	return status, got
}

// writePresence writes a user's presence state into kv, as a worker would:
// online with one live connection, or offline with none.
func writePresence(t *testing.T, kv jetstream.KeyValue, user string, online bool, at time.Time) {
	t.Helper()
	_, _, _, err := store.Update(t.Context(), kv, store.Key(user), func(p *model.Presence, _ bool) error {
		p.Conns = nil
		if online {
			p.Conns = map[string]model.Conn{"gw~2~1": {Node: "gw", Epoch: 2, OpenedAt: at}}
		}
		p.LastActive, p.Online = at, online
		p.Version++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIndexFollowsARecreatedPresenceBucket: the presence bucket is deleted
// and recreated under a running api node, as the workers do when the presence
// state is lost (presence-worker/loss.go), and a new state written to it.
// The node rebuilds its index from the new bucket without a restart: while
// the bucket is missing queries get a retryable 503, no answer after the
// deletion shows the old bucket's state, and queries converge to the new
// one, secondary indexes included; the new bucket is then followed.
func TestIndexFollowsARecreatedPresenceBucket(t *testing.T) {
	e := newEnv(t)
	at := time.Now().UTC().Truncate(time.Second)
	e.upsert(map[string]any{"id": "ann"}, map[string]any{"id": "bob"}, map[string]any{"id": "cat"}, map[string]any{"id": "dan"})
	for _, u := range []string{"ann", "bob", "cat"} {
		e.setOnline(u, at)
	}
	everyone := map[string]any{"id": map[string]any{"$in": []string{"ann", "bob", "cat", "dan"}}}
	if _, got := e.tryUsers(everyone); !got["ann"] || !got["bob"] || !got["cat"] || got["dan"] {
		t.Fatalf("before the loss: online %v, want ann, bob and cat", got)
	}

	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, store.BucketPresence); err != nil {
		t.Fatal(err)
	}
	// While the bucket is missing there is no presence to answer from.
	began := time.Now()
	if status, got := e.tryUsers(everyone); status != http.StatusServiceUnavailable {
		t.Fatalf("while the bucket is missing: status %d (%v), want 503", status, got)
	}
	t.Logf("a query while the bucket was missing got 503 after %v", time.Since(began).Round(time.Millisecond))

	// The new truth: ann reconnected, cat is offline, dan came online and
	// bob is not in the new bucket at all.
	st, err := store.Setup(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recreated := time.Now()
	writePresence(t, st.Presence, "ann", true, at.Add(time.Minute))
	writePresence(t, st.Presence, "cat", false, at.Add(time.Minute))
	writePresence(t, st.Presence, "dan", true, at.Add(time.Minute))
	written := time.Now()

	onlineOnly := map[string]any{"online": true}
	converged := func() bool {
		status, got := e.tryUsers(everyone)
		if status == http.StatusServiceUnavailable {
			return false // rebuilding: try again
		}
		if status != http.StatusOK {
			t.Fatalf("status %d while the index follows the new bucket", status)
		}
		if got["bob"] || got["cat"] {
			t.Fatalf("an answer after the bucket was recreated shows its old state: online %v", got)
		}
		if !got["ann"] || !got["dan"] {
			return false
		}
		status, got = e.tryUsers(onlineOnly) // the online index, rebuilt
		if status != http.StatusOK {
			return false
		}
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range got {
				if !yield(id) {
					return
				}
			}
		})
		if !slices.Equal(ids, []string{"ann", "dan"}) {
			t.Fatalf("online users %v, want [ann dan]", ids)
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !converged() {
		if time.Now().After(deadline) {
			t.Fatal("queries did not follow the recreated bucket within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	t.Logf("queries follow the new bucket %v after it was recreated (%v after the new state was written)",
		time.Since(recreated).Round(time.Millisecond), time.Since(written).Round(time.Millisecond))

	// The watch now follows the new stream: a change and a deletion show at
	// once (every query waits for the bucket's last revision).
	writePresence(t, st.Presence, "bob", true, at.Add(2*time.Minute))
	if err := st.Presence.Delete(ctx, store.Key("ann")); err != nil {
		t.Fatal(err)
	}
	if _, got := e.tryUsers(everyone); got["ann"] || !got["bob"] || got["cat"] || !got["dan"] {
		t.Fatalf("after more changes to the new bucket: online %v, want bob and dan", got)
	}
}

// TestIndexFollowsARecreatedUsersBucket: the users bucket is deleted and
// recreated with fewer users while several clients keep querying. Every
// answer is a 200 or a retryable 503, and the users missing from the new
// bucket are gone from the answers.
func TestIndexFollowsARecreatedUsersBucket(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann", "role": "admin"}, map[string]any{"id": "bob", "role": "admin"}, map[string]any{"id": "cat"})
	payload, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"role": "admin"}})
	q := url.Values{"payload": {string(payload)}, "api_key": {testKey}}
	// get is a query the other clients make off the test goroutine: its
	// status, and the users found.
	get := func() (int, []string, error) {
		hr, _ := http.NewRequest("GET", e.base+"/users?"+q.Encode(), nil)
		hr.Header.Set("Authorization", e.admin)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var out struct {
			Users []struct {
				ID string `json:"id"`
			} `json:"users"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return 0, nil, err
		}
		var found []string
		for _, u := range out.Users {
			found = append(found, u.ID)
		}
		return resp.StatusCode, found, nil
	}

	// Other clients query all along: through the deletion, the missing
	// bucket, its recreation and the rebuild. A query sent once the bucket
	// is recreated must not find ann (-2 counts those that do).
	stop := make(chan struct{})
	var recreatedMark atomic.Bool
	var answers atomic.Int64
	statuses := make(chan map[int]int, 4)
	for range 4 {
		go func() {
			seen := map[int]int{}
			defer func() { statuses <- seen }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := recreatedMark.Load()
				status, found, err := get()
				switch {
				case err != nil:
					seen[-1]++
				case after && status == http.StatusOK && slices.Contains(found, "ann"):
					seen[-2]++
				default:
					seen[status]++
				}
				answers.Add(1)
			}
		}()
	}
	// answered waits until the other clients have had n more answers.
	answered := func(n int64) {
		t.Helper()
		want := answers.Load() + n
		deadline := time.Now().Add(10 * time.Second)
		for answers.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("the other clients had %d answers in 10s, want %d", answers.Load(), want)
			}
			time.Sleep(time.Millisecond) // polling with a deadline
		}
	}
	answered(8)

	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, store.BucketUsers); err != nil {
		t.Fatal(err)
	}
	st, err := store.Setup(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recreated := time.Now()
	recreatedMark.Store(true)
	b, _ := json.Marshal(model.User{ID: "bob", Role: "admin", CreatedAt: recreated, UpdatedAt: recreated})
	if _, err := st.Users.Put(ctx, store.Key("bob"), b); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		status, out := e.call(req{method: "GET", path: "/users", tok: e.admin, query: url.Values{"payload": {string(payload)}}})
		if status == http.StatusOK && slices.Equal(ids(out["users"].([]any)), []string{"bob"}) {
			break
		}
		if status != http.StatusOK && status != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %v", status, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("queries did not follow the recreated users bucket within 10s: %d %v", status, out)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	t.Logf("queries follow the new users bucket %v after it was recreated", time.Since(recreated).Round(time.Millisecond))
	answered(8)
	close(stop)
	total := map[int]int{}
	for range 4 {
		for s, n := range <-statuses {
			total[s] += n
		}
	}
	t.Logf("answers to the other clients meanwhile (status: count): %v", total)
	for s := range total {
		switch s {
		case http.StatusOK, http.StatusServiceUnavailable:
		case -1:
			t.Errorf("another client's query failed (%v)", total)
		case -2:
			t.Errorf("another client's query sent after the recreation found a user of the old bucket (%v)", total)
		default:
			t.Errorf("another client got status %d (%v)", s, total)
		}
	}
	if got := ids(e.queryUsers(e.admin, map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": []string{"ann", "bob", "cat"}}}}, nil)); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("users %v, want [bob]", got)
	}
}
