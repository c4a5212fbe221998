package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/token"
)

func TestUpsertThenQueryBySetSortAndPage(t *testing.T) {
	e := newEnv(t)
	got := e.upsert(
		map[string]any{"id": "ann", "name": "Ann", "age": 31, "city": "Oslo"},
		map[string]any{"id": "bob", "age": 25, "city": "Rome"},
		map[string]any{"id": "cleo", "age": 40, "city": "Oslo"},
		map[string]any{"id": "dan@x", "age": 19, "city": "Oslo"},
		map[string]any{"id": "eve", "age": 50},
	)
	ann := got["ann"].(map[string]any)
	if ann["name"] != "Ann" || ann["age"] != 31.0 || ann["role"] != "user" || ann["online"] != false || ann["created_at"] == nil {
		t.Fatalf("upserted ann reads %v", ann)
	}

	set := []string{"ann", "bob", "cleo", "dan@x"}
	all := e.queryUsers(e.admin, map[string]any{
		"filter_conditions": map[string]any{"id": map[string]any{"$in": set}},
		"sort":              []any{map[string]any{"field": "age", "direction": -1}},
	}, nil)
	if want := []string{"cleo", "ann", "bob", "dan@x"}; !slices.Equal(ids(all), want) {
		t.Fatalf("sorted by age desc: got %v, want %v", ids(all), want)
	}
	page := e.queryUsers(e.admin, map[string]any{
		"filter_conditions": map[string]any{"id": map[string]any{"$in": set}},
		"sort":              []any{map[string]any{"field": "age", "direction": -1}},
		"limit":             2, "offset": 1,
	}, nil)
	if want := []string{"ann", "bob"}; !slices.Equal(ids(page), want) {
		t.Fatalf("limit 2 offset 1: got %v, want %v", ids(page), want)
	}

	for _, tc := range []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"plain equality on a custom field", map[string]any{"city": "Oslo"}, []string{"ann", "cleo", "dan@x"}},
		{"$eq on a custom field", map[string]any{"city": map[string]any{"$eq": "Rome"}}, []string{"bob"}},
		{"$in on a custom field", map[string]any{"age": map[string]any{"$in": []any{19, 50}}}, []string{"dan@x", "eve"}},
		{"online false matches everyone offline", map[string]any{"online": false, "city": "Rome"}, []string{"bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := e.queryUsers(e.admin, map[string]any{"filter_conditions": tc.filter, "sort": []any{map[string]any{"field": "id", "direction": 1}}}, nil)
			if !slices.Equal(ids(got), tc.want) {
				t.Errorf("filter %v: got %v, want %v", tc.filter, ids(got), tc.want)
			}
		})
	}

	// Upsert replaces custom fields and keeps created_at.
	time.Sleep(2 * time.Millisecond) // distinct updated_at, not synchronisation
	again := e.upsert(map[string]any{"id": "ann", "city": "Bergen"})["ann"].(map[string]any)
	if _, has := again["age"]; has || again["city"] != "Bergen" || again["name"] != nil {
		t.Errorf("upsert did not replace the profile: %v", again)
	}
	if again["created_at"] != ann["created_at"] || again["updated_at"] == ann["updated_at"] {
		t.Errorf("created_at %v→%v must stay, updated_at %v→%v must change", ann["created_at"], again["created_at"], ann["updated_at"], again["updated_at"])
	}
}

func TestQueryUsersDefaultsAndLimits(t *testing.T) {
	e := newEnv(t)
	var users []map[string]any
	for i := range 35 {
		users = append(users, map[string]any{"id": "u" + string(rune('a'+i/26)) + string(rune('a'+i%26))})
	}
	e.upsert(users...)
	if got := e.queryUsers(e.admin, map[string]any{"filter_conditions": map[string]any{}}, nil); len(got) != 30 {
		t.Errorf("default limit: got %d users, want 30", len(got))
	}
	b, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{}, "limit": 101})
	e.fails(req{method: "GET", path: "/users", tok: e.admin, query: url.Values{"payload": {string(b)}}}, 400, 4)
}

func TestQueryUsersUnknownOperatorIsNamed(t *testing.T) {
	e := newEnv(t)
	b, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$nosuchop": "x"}}})
	out := e.fails(req{method: "GET", path: "/users", tok: e.admin, query: url.Values{"payload": {string(b)}}}, 400, 4)
	if msg := out["message"].(string); msg != `QueryUsers failed with error: "unknown operator $nosuchop"` {
		t.Errorf("message %q does not name the operator", msg)
	}
	e.fails(req{method: "GET", path: "/users", tok: e.admin, query: url.Values{"payload": {"{not json"}}}, 400, 4)
}

func TestPartialUpdate(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann", "name": "Ann", "color": "red", "status": "busy"}, map[string]any{"id": "bob"})

	out := e.ok(req{method: "PATCH", path: "/users", tok: e.admin, body: map[string]any{"users": []any{
		map[string]any{"id": "ann", "set": map[string]any{"mood": "happy", "name": "Annie"}, "unset": []any{"color"}},
	}}})
	ann := out["users"].(map[string]any)["ann"].(map[string]any)
	if ann["mood"] != "happy" || ann["name"] != "Annie" || ann["color"] != nil || ann["status"] != "busy" {
		t.Errorf("server set/unset: got %v", ann)
	}

	annTok := e.userToken("ann")
	out = e.ok(req{method: "PATCH", path: "/users", tok: annTok, body: map[string]any{"users": []any{
		map[string]any{"id": "ann", "set": map[string]any{"invisible": true, "status": "away"}},
	}}})
	ann = out["users"].(map[string]any)["ann"].(map[string]any)
	if ann["invisible"] != true || ann["status"] != "away" || ann["online"] != false {
		t.Errorf("self update reads %v, want invisible and status away", ann)
	}

	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"a user may not update another user", map[string]any{"id": "bob", "set": map[string]any{"status": "x"}}},
		{"a user may not set their role", map[string]any{"id": "ann", "set": map[string]any{"role": "admin"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.fails(req{method: "PATCH", path: "/users", tok: annTok, body: map[string]any{"users": []any{tc.body}}}, 403, 17)
		})
	}
	e.fails(req{method: "POST", path: "/users", tok: annTok, body: map[string]any{"users": map[string]any{"bob": map[string]any{"id": "bob"}}}}, 403, 17)
	e.fails(req{method: "PATCH", path: "/users", tok: e.admin, body: map[string]any{"users": []any{map[string]any{"id": "nobody", "set": map[string]any{"a": 1}}}}}, 404, 16)
	e.fails(req{method: "PATCH", path: "/users", tok: e.admin, body: map[string]any{"users": []any{map[string]any{"id": "ann", "set": map[string]any{"invisible": "yes"}}}}}, 400, 4)
	e.fails(req{method: "PATCH", path: "/users", tok: e.admin, body: map[string]any{"users": []any{map[string]any{"id": "bad id", "set": map[string]any{"a": 1}}}}}, 400, 4)
}

func TestAuthErrors(t *testing.T) {
	e := newEnv(t)
	wrongKey := "nope"
	forged, _ := token.ForServer("another-secret")
	exp := time.Now().Add(-time.Minute).Unix()
	expired, _ := token.Sign(testSecret, map[string]any{"user_id": "ann", "exp": exp})
	dev := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYW5uIn0.devtoken"
	for _, tc := range []struct {
		name         string
		r            req
		status, code int
	}{
		{"wrong api_key", req{tok: e.admin, apiKey: &wrongKey}, 401, 2},
		{"no token", req{}, 401, 3},
		{"bad signature", req{tok: forged}, 401, 43},
		{"expired token", req{tok: expired}, 401, 40},
		{"dev token while disabled", req{tok: dev}, 401, 43},
		{"garbage token", req{tok: "a.b.c"}, 401, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.method, tc.r.path = "GET", "/users"
			e.fails(tc.r, tc.status, tc.code)
		})
	}
	// A Bearer prefix is tolerated.
	e.ok(req{method: "GET", path: "/users", tok: "Bearer " + e.admin})
	e.fails(req{method: "GET", path: "/no-such-path", tok: e.admin}, 404, 16)
}

func TestBodiesAreBounded(t *testing.T) {
	e := newEnv(t)
	big := `{"users": {"ann": {"id": "ann", "x": "` + strings.Repeat("a", 70<<10) + `"}}}`
	e.fails(req{method: "POST", path: "/users", tok: e.admin, body: []byte(big)}, http.StatusRequestEntityTooLarge, 22)
	tooBigUser := map[string]any{"id": "ann", "x": strings.Repeat("a", 6<<10)}
	e.fails(req{method: "POST", path: "/users", tok: e.admin, body: map[string]any{"users": map[string]any{"ann": tooBigUser}}}, 400, 4)
	e.fails(req{method: "POST", path: "/users", tok: e.admin, body: []byte(`{"users": [1]}`)}, 400, 4)
}

func TestInvisibleUserIsOfflineToEveryone(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann", "invisible": true}, map[string]any{"id": "bob"})
	at := time.Now().UTC().Truncate(time.Second)
	e.setOnline("ann", at)
	e.setOnline("bob", at)

	server := e.queryUsers(e.admin, map[string]any{"filter_conditions": map[string]any{"id": "ann"}}, nil)
	if len(server) != 1 || server[0].(map[string]any)["invisible"] != true || server[0].(map[string]any)["online"] != false {
		t.Fatalf("server-side read of invisible connected ann: %v, want invisible: true, online: false", server)
	}
	other := e.queryUsers(e.userToken("bob"), map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": []any{"ann", "bob"}}}, "sort": []any{map[string]any{"field": "id"}}}, nil)
	a, b := other[0].(map[string]any), other[1].(map[string]any)
	if _, shows := a["invisible"]; shows || a["online"] != false {
		t.Errorf("bob sees ann as %v, want online false without the flag", a)
	}
	if b["online"] != true || b["last_active"] == nil {
		t.Errorf("bob sees himself as %v, want online with last_active", b)
	}
	self := e.queryUsers(e.userToken("ann"), map[string]any{"filter_conditions": map[string]any{"id": "ann"}}, nil)
	if self[0].(map[string]any)["invisible"] != true {
		t.Errorf("ann sees herself as %v, want the invisible flag", self[0])
	}
	for _, tok := range []string{e.admin, e.userToken("bob")} {
		online := e.queryUsers(tok, map[string]any{"filter_conditions": map[string]any{"online": true}}, nil)
		if !slices.Equal(ids(online), []string{"bob"}) {
			t.Errorf("filter online: true matched %v, want only bob", ids(online))
		}
	}
	hidden := e.queryUsers(e.userToken("bob"), map[string]any{"filter_conditions": map[string]any{"invisible": true}}, nil)
	if len(hidden) != 0 {
		t.Errorf("another user found invisible users by filtering on the flag: %v", ids(hidden))
	}
}

func TestPresenceIsCurrentAfterAWorkerWrite(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann"})
	e.queryUsers(e.admin, map[string]any{"filter_conditions": map[string]any{"id": "ann"}}, nil)
	e.setOnline("ann", time.Now().UTC())
	got := e.queryUsers(e.admin, map[string]any{"filter_conditions": map[string]any{"id": "ann", "online": true}}, nil)
	if len(got) != 1 || got[0].(map[string]any)["online"] != true {
		t.Fatalf("query right after the presence write: %v, want ann online", got)
	}
}

func TestWritesOnOneNodeAreReadOnAnother(t *testing.T) {
	e := newEnv(t)
	_, other := e.startNode("api-2")
	for i := range 5 {
		id := "user" + string(rune('a'+i))
		e.upsert(map[string]any{"id": id, "n": i})
		got := e.queryUsers(e.admin, map[string]any{"filter_conditions": map[string]any{"n": i}}, url.Values{})
		if !slices.Equal(ids(got), []string{id}) {
			t.Fatalf("same node: got %v", ids(got))
		}
		b, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": id}})
		out := e.ok(req{method: "GET", path: "/users", tok: e.admin, base: other, query: url.Values{"payload": {string(b)}}})
		if len(out["users"].([]any)) != 1 {
			t.Fatalf("node api-2 does not see %s right after its upsert on api-1", id)
		}
	}
}

func TestVisibilityChangeGoesToTheWorker(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann", "status": "hi"})
	sub, err := e.nc.SubscribeSync(subject.UserCommand("ann"))
	if err != nil {
		t.Fatal(err)
	}
	e.ok(req{method: "PATCH", path: "/users", tok: e.userToken("ann"), body: map[string]any{"users": []any{
		map[string]any{"id": "ann", "set": map[string]any{"invisible": true}},
	}}})
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no visibility event: %v", err)
	}
	ev, err := connevent.Decode(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := e.st.Users.Get(t.Context(), "ann")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != connevent.Visibility || ev.User != "ann" || !ev.Invisible || ev.ProfileRev != entry.Revision() {
		t.Errorf("got %+v, want a visibility event for ann, invisible, profile rev %d", ev, entry.Revision())
	}
	if msg.Header.Get("Nats-Msg-Id") != ev.MsgID() {
		t.Errorf("message id %q, want %q", msg.Header.Get("Nats-Msg-Id"), ev.MsgID())
	}
	// It is on the worker's input stream, and a status change is not a visibility change.
	stream, err := e.st.JS.Stream(t.Context(), "PRESENCE_IN")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(t.Context(), subject.UserCommand("ann")); err != nil {
		t.Errorf("visibility event not on the input stream: %v", err)
	}
	// The worker applies it (simulated here: no worker runs in these tests).
	setWorkerInvisible := func(invisible bool) {
		_, _, _, err := store.Update(t.Context(), e.st.Presence, "ann", func(p *model.Presence, _ bool) error {
			p.Invisible, p.InvisibleRev = invisible, entry.Revision()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setWorkerInvisible(true)
	status := func(s string) {
		e.ok(req{method: "PATCH", path: "/users", tok: e.admin, body: map[string]any{"users": []any{
			map[string]any{"id": "ann", "set": map[string]any{"status": s}},
		}}})
	}
	// nextKind returns the next worker input of ann that is not a profile
	// change (status changes send those too).
	nextKind := func(wait time.Duration) (connevent.Event, bool) {
		for {
			msg, err := sub.NextMsg(wait)
			if err != nil {
				return connevent.Event{}, false
			}
			if ev, _ := connevent.Decode(msg.Data); ev.Kind != connevent.ProfileChanged {
				return ev, true
			}
		}
	}
	status("away")
	if ev, ok := nextKind(100 * time.Millisecond); ok {
		t.Errorf("a status change published a visibility event: %+v", ev)
	}
	// Had the first publish been lost, the worker would still think ann
	// visible: the next write of her profile publishes the flag again.
	setWorkerInvisible(false)
	status("back")
	ev, ok := nextKind(5 * time.Second)
	if !ok {
		t.Fatal("a profile write did not heal the worker's stale visibility")
	}
	if ev.Kind != connevent.Visibility || !ev.Invisible || ev.ProfileRev <= entry.Revision() {
		t.Errorf("healing event %+v, want invisible with a newer profile revision", ev)
	}
}

// TestStatusChangeGoesToTheWorker: a profile change is announced to the
// worker, which emits user.updated in the user's one event sequence.
func TestStatusChangeGoesToTheWorker(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann", "status": "hi"})
	sub, err := e.nc.SubscribeSync(subject.UserCommand("ann"))
	if err != nil {
		t.Fatal(err)
	}
	e.ok(req{method: "PATCH", path: "/users", tok: e.userToken("ann"), body: map[string]any{"users": []any{
		map[string]any{"id": "ann", "set": map[string]any{"status": "lunch"}},
	}}})
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no profile change announced: %v", err)
	}
	ev, err := connevent.Decode(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := e.st.Users.Get(t.Context(), "ann")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != connevent.ProfileChanged || ev.User != "ann" || ev.ProfileRev != entry.Revision() {
		t.Errorf("got %+v, want a profile change of ann at revision %d", ev, entry.Revision())
	}
}

func TestARestartedNodeCatchesUpWithItsIndex(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	srv, base := e.startNodeIn("api-r", dir)
	e.upsert(map[string]any{"id": "keep"}, map[string]any{"id": "gone"})
	b, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{}})
	all := req{method: "GET", path: "/users", tok: e.admin, base: base, query: url.Values{"payload": {string(b)}}}
	if got := ids(e.ok(all)["users"].([]any)); !slices.Equal(got, []string{"gone", "keep"}) {
		t.Fatalf("before restart: %v", got)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Deleted while the node is down: the restarted node must not keep it.
	if err := e.st.Users.Delete(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	_, all.base = e.startNodeIn("api-r", dir)
	if got := ids(e.ok(all)["users"].([]any)); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("after restart: %v, want only keep", got)
	}
}
