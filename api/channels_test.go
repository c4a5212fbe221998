package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/connid"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/route"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/watch"
)

func (e *env) memberships(user string) []string {
	e.t.Helper()
	ms, _, err := store.Get[model.Memberships](context.Background(), e.st.Memberships, store.Key(user))
	if err != nil && err != store.ErrNotFound {
		e.t.Fatal(err)
	}
	return ms.CIDs
}

func memberIDs(state map[string]any) []string {
	var out []string
	for _, m := range state["members"].([]any) {
		out = append(out, m.(map[string]any)["user_id"].(string))
	}
	slices.Sort(out)
	return out
}

func TestGetOrCreateChannelReturnsTheSDKState(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john", "name": "John"}, map[string]any{"id": "jack"})
	e.setOnline("jack", time.Now().UTC())
	john := e.userToken("john")

	st := e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john, body: map[string]any{
		"data": map[string]any{"members": []any{"john", "jack"}, "color": "green"}, "state": true, "watch": true, "presence": true,
	}})
	ch := st["channel"].(map[string]any)
	for k, want := range map[string]any{"id": "talk", "type": "messaging", "cid": "messaging:talk", "member_count": 2.0, "color": "green"} {
		if ch[k] != want {
			t.Errorf("channel.%s = %v, want %v", k, ch[k], want)
		}
	}
	if cb, _ := ch["created_by"].(map[string]any); cb["id"] != "john" || cb["name"] != "John" {
		t.Errorf("created_by = %v, want john's user", ch["created_by"])
	}
	if cfg, _ := ch["config"].(map[string]any); cfg["name"] != "messaging" || cfg["connect_events"] != true {
		t.Errorf("config = %v", ch["config"])
	}
	if _, ok := ch["own_capabilities"].([]any); !ok || ch["created_at"] == nil || ch["updated_at"] == nil {
		t.Errorf("channel lacks own_capabilities or times: %v", ch)
	}
	for _, k := range []string{"messages", "pinned_messages", "read", "watchers"} {
		if _, ok := st[k].([]any); !ok {
			t.Errorf("%s = %v, want an array", k, st[k])
		}
	}
	if !slices.Equal(memberIDs(st), []string{"jack", "john"}) {
		t.Errorf("members %v", memberIDs(st))
	}
	for _, m := range st["members"].([]any) {
		m := m.(map[string]any)
		u := m["user"].(map[string]any)
		if m["channel_role"] != "channel_member" || m["created_at"] == nil || u["id"] != m["user_id"] {
			t.Errorf("member %v", m)
		}
		if m["user_id"] == "jack" && u["online"] != true {
			t.Errorf("jack is connected but reads %v", u)
		}
	}
	if ms, _ := st["membership"].(map[string]any); ms["user_id"] != "john" {
		t.Errorf("membership = %v, want john's", st["membership"])
	}
	for _, u := range []string{"john", "jack"} {
		if got := e.memberships(u); !slices.Equal(got, []string{"messaging:talk"}) {
			t.Errorf("memberships of %s = %v", u, got)
		}
	}

	// Querying again gets the same channel; data is not applied twice.
	again := e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: e.userToken("jack"), body: map[string]any{"data": map[string]any{"color": "red"}}})
	if again["channel"].(map[string]any)["color"] != "green" {
		t.Errorf("get of an existing channel changed it: %v", again["channel"])
	}
	if _, ok := e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: e.admin})["membership"]; ok {
		t.Error("a server-side read has a membership")
	}
}

func TestChannelAccessAndInputErrors(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"}, map[string]any{"id": "jack"}, map[string]any{"id": "eve"})
	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: e.userToken("john"), body: map[string]any{
		"data": map[string]any{"members": []any{"john", "jack"}}}})
	eve := e.userToken("eve")
	for _, tc := range []struct {
		name         string
		r            req
		status, code int
	}{
		{"a non-member may not watch", req{method: "POST", path: "/channels/messaging/talk/query", tok: eve, body: map[string]any{"watch": true}}, 403, 17},
		{"a user may not create a channel without being a member", req{method: "POST", path: "/channels/messaging/other/query", tok: eve, body: map[string]any{"data": map[string]any{"members": []any{"john"}}}}, 403, 17},
		{"members must exist", req{method: "POST", path: "/channels/messaging/x/query", tok: e.admin, body: map[string]any{"data": map[string]any{"members": []any{"john", "ghost"}, "created_by_id": "john"}}}, 400, 4},
		{"server-side creation names a creator", req{method: "POST", path: "/channels/messaging/y/query", tok: e.admin, body: map[string]any{"data": map[string]any{"members": []any{"john"}}}}, 400, 4},
		{"the channel type must exist", req{method: "POST", path: "/channels/nosuchtype/z/query", tok: e.admin, body: map[string]any{"data": map[string]any{"created_by_id": "john"}}}, 400, 4},
		{"channel ids are checked", req{method: "POST", path: "/channels/messaging/a.b/query", tok: e.admin}, 400, 4},
		{"a non-member may not add members", req{method: "POST", path: "/channels/messaging/talk", tok: eve, body: map[string]any{"add_members": []any{"eve"}}}, 403, 17},
		{"a non-creator may not delete", req{method: "DELETE", path: "/channels/messaging/talk", tok: e.userToken("jack")}, 403, 17},
		{"a missing channel is not found", req{method: "DELETE", path: "/channels/messaging/none", tok: e.admin}, 404, 16},
	} {
		t.Run(tc.name, func(t *testing.T) { e.fails(tc.r, tc.status, tc.code) })
	}
	if !strings.Contains(e.fails(req{method: "POST", path: "/channels/messaging/x/query", tok: e.admin, body: map[string]any{"data": map[string]any{"members": []any{"ghost"}, "created_by_id": "john"}}}, 400, 4)["message"].(string), "ghost") {
		t.Error("the error does not name the missing user")
	}
}

func TestDistinctChannelIsPickedFromItsMembers(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"}, map[string]any{"id": "jack"})
	a := e.ok(req{method: "POST", path: "/channels/messaging/query", tok: e.userToken("john"), body: map[string]any{"data": map[string]any{"members": []any{"john", "jack"}}}})
	b := e.ok(req{method: "POST", path: "/channels/messaging/query", tok: e.userToken("jack"), body: map[string]any{"data": map[string]any{"members": []any{"jack", "john"}}}})
	idA, idB := a["channel"].(map[string]any)["id"].(string), b["channel"].(map[string]any)["id"].(string)
	if idA != idB || !strings.HasPrefix(idA, "!members-") || subject.CheckChannelID(idA) != nil {
		t.Fatalf("ids %q and %q, want one valid !members- id", idA, idB)
	}
	if got := e.memberships("jack"); !slices.Equal(got, []string{"messaging:" + idA}) {
		t.Errorf("memberships of jack = %v", got)
	}
}

func TestMembersAndDeleteKeepMembershipsInSync(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"}, map[string]any{"id": "jack"}, map[string]any{"id": "jill"})
	john := e.userToken("john")
	e.ok(req{method: "POST", path: "/channels/team/t1/query", tok: john, body: map[string]any{"data": map[string]any{"members": []any{"john"}}}})

	out := e.ok(req{method: "POST", path: "/channels/team/t1", tok: john, body: map[string]any{"add_members": []any{"jack", map[string]any{"user_id": "jill"}}}})
	if !slices.Equal(memberIDs(out), []string{"jack", "jill", "john"}) || out["channel"].(map[string]any)["member_count"] != 3.0 {
		t.Errorf("after add: %v", out)
	}
	if !slices.Equal(e.memberships("jill"), []string{"team:t1"}) {
		t.Errorf("jill's memberships = %v", e.memberships("jill"))
	}
	out = e.ok(req{method: "POST", path: "/channels/team/t1", tok: e.admin, body: map[string]any{"remove_members": []any{"jack"}, "data": map[string]any{"topic": "x"}}})
	if !slices.Equal(memberIDs(out), []string{"jill", "john"}) || out["channel"].(map[string]any)["topic"] != "x" {
		t.Errorf("after remove and update: %v", out)
	}
	if got := e.memberships("jack"); len(got) != 0 {
		t.Errorf("jack's memberships = %v, want none", got)
	}
	out = e.ok(req{method: "PATCH", path: "/channels/team/t1", tok: john, body: map[string]any{"set": map[string]any{"mood": "calm", "id": "other"}, "unset": []any{"topic"}}})
	if ch := out["channel"].(map[string]any); ch["mood"] != "calm" || ch["topic"] != nil || ch["id"] != "t1" {
		t.Errorf("after partial update: %v", ch)
	}
	e.fails(req{method: "PATCH", path: "/channels/team/t1", tok: e.userToken("jack"), body: map[string]any{"set": map[string]any{"x": 1}}}, 403, 17)
	e.ok(req{method: "DELETE", path: "/channels/team/t1", tok: john})
	for _, u := range []string{"john", "jill"} {
		if got := e.memberships(u); len(got) != 0 {
			t.Errorf("%s's memberships after delete = %v", u, got)
		}
	}
	// The id is free again: querying it creates a new, empty channel.
	fresh := e.ok(req{method: "POST", path: "/channels/team/t1/query", tok: e.userToken("jill")})["channel"].(map[string]any)
	if fresh["member_count"] != 0.0 || fresh["created_by"].(map[string]any)["id"] != "jill" {
		t.Errorf("recreated channel %v", fresh)
	}
}

func TestQueryChannelsByCustomField(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"}, map[string]any{"id": "jack"})
	mk := func(id, color string, members ...any) {
		e.ok(req{method: "POST", path: "/channels/messaging/" + id + "/query", tok: e.admin, body: map[string]any{
			"data": map[string]any{"members": members, "color": color, "created_by_id": "john"}}})
	}
	mk("a", "green", "john", "jack")
	mk("b", "green", "john")
	mk("c", "red", "jack")

	query := func(tok string, body map[string]any) []string {
		out := e.ok(req{method: "POST", path: "/channels", tok: tok, body: body})
		var cids []string
		for _, st := range out["channels"].([]any) {
			st := st.(map[string]any)
			if _, ok := st["members"].([]any); !ok {
				t.Errorf("channel state without members array: %v", st)
			}
			cids = append(cids, st["channel"].(map[string]any)["cid"].(string))
		}
		return cids
	}
	byCID := []any{map[string]any{"field": "cid", "direction": 1}}
	for _, tc := range []struct {
		name string
		tok  string
		body map[string]any
		want []string
	}{
		{"custom field equality, server-side", e.admin, map[string]any{"filter_conditions": map[string]any{"color": "green"}, "sort": byCID}, []string{"messaging:a", "messaging:b"}},
		{"a user sees only their channels", e.userToken("jack"), map[string]any{"filter_conditions": map[string]any{"color": "green"}}, []string{"messaging:a"}},
		{"members $in", e.admin, map[string]any{"filter_conditions": map[string]any{"members": map[string]any{"$in": []any{"jack"}}}, "sort": byCID}, []string{"messaging:a", "messaging:c"}},
		{"cid $in with the SDK's reconnect sort", e.admin, map[string]any{"filter_conditions": map[string]any{"cid": map[string]any{"$in": []any{"messaging:c", "messaging:b"}}}, "sort": []any{map[string]any{"field": "last_message_at", "direction": -1}}, "limit": 30}, []string{"messaging:b", "messaging:c"}},
		{"type and id", e.admin, map[string]any{"filter_conditions": map[string]any{"type": "messaging", "id": map[string]any{"$eq": "c"}}}, []string{"messaging:c"}},
		{"sort by created_at desc with a page", e.admin, map[string]any{"filter_conditions": map[string]any{}, "sort": []any{map[string]any{"field": "created_at", "direction": -1}}, "limit": 2}, []string{"messaging:c", "messaging:b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := query(tc.tok, tc.body); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	out := e.fails(req{method: "POST", path: "/channels", tok: e.admin, body: map[string]any{"filter_conditions": map[string]any{"color": map[string]any{"$bogus": 1}}}}, 400, 4)
	if !strings.Contains(out["message"].(string), "$bogus") {
		t.Errorf("message %q does not name the operator", out["message"])
	}
	e.fails(req{method: "POST", path: "/channels", tok: e.admin, body: map[string]any{"limit": 31}}, 400, 4)
}

func TestChannelTypes(t *testing.T) {
	e := newEnv(t)
	r, err := route.New(t.Context(), e.st)
	if err != nil {
		t.Fatal(err)
	}
	if !r.PresenceEnabled("messaging") {
		t.Fatal("messaging starts without presence")
	}
	out := e.ok(req{method: "PUT", path: "/channeltypes/messaging", tok: e.admin, body: map[string]any{"connect_events": false}})
	if out["connect_events"] != false || out["name"] != "messaging" || out["typing_events"] != true {
		t.Errorf("update answered %v", out)
	}
	eventually(t, "route.Router to see connect_events off", func() bool { return !r.PresenceEnabled("messaging") })

	e.fails(req{method: "PUT", path: "/channeltypes/messaging", tok: e.userToken("ann"), body: map[string]any{"connect_events": true}}, 403, 17)
	e.fails(req{method: "PUT", path: "/channeltypes/messaging", tok: e.admin, body: map[string]any{"connect_events": "no"}}, 400, 4)
	e.fails(req{method: "PUT", path: "/channeltypes/nosuch", tok: e.admin, body: map[string]any{}}, 404, 16)

	e.ok(req{method: "POST", path: "/channeltypes", tok: e.admin, body: map[string]any{"name": "quiet", "connect_events": false}})
	e.fails(req{method: "POST", path: "/channeltypes", tok: e.admin, body: map[string]any{"name": "quiet"}}, 400, 4)
	e.fails(req{method: "POST", path: "/channeltypes", tok: e.userToken("ann"), body: map[string]any{"name": "mine"}}, 403, 17)
	got := e.ok(req{method: "GET", path: "/channeltypes/quiet", tok: e.userToken("ann")})
	if got["connect_events"] != false {
		t.Errorf("get quiet: %v", got)
	}
	list := e.ok(req{method: "GET", path: "/channeltypes", tok: e.admin})["channel_types"].(map[string]any)
	if _, ok := list["quiet"]; !ok || len(list) != 6 {
		t.Errorf("list has %d types: %v", len(list), list)
	}
	e.upsert(map[string]any{"id": "john"})
	e.ok(req{method: "POST", path: "/channels/quiet/q1/query", tok: e.admin, body: map[string]any{"data": map[string]any{"created_by_id": "john"}}})
	e.fails(req{method: "DELETE", path: "/channeltypes/quiet", tok: e.admin}, 400, 4)
	e.ok(req{method: "DELETE", path: "/channels/quiet/q1", tok: e.admin})
	e.ok(req{method: "DELETE", path: "/channeltypes/quiet", tok: e.admin})
	e.fails(req{method: "GET", path: "/channeltypes/quiet", tok: e.admin}, 404, 16)
}

// gateway answers watch requests of one node like a gateway would, recording them.
type fakeGateway struct {
	reqs chan watch.Request
}

func (e *env) fakeGateway(node string, reply watch.Reply) *fakeGateway {
	g := &fakeGateway{reqs: make(chan watch.Request, 16)}
	sub, err := e.nc.Subscribe(subject.GatewayWatch(node), func(m *nats.Msg) {
		var r watch.Request
		_ = json.Unmarshal(m.Data, &r)
		g.reqs <- r
		b, _ := json.Marshal(reply)
		_ = m.Respond(b)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return g
}

func (g *fakeGateway) next(t *testing.T) watch.Request {
	t.Helper()
	select {
	case r := <-g.reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no watch request reached the gateway")
	}
	return watch.Request{}
}

func TestWatchesGoToTheOwningGateway(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"}, map[string]any{"id": "jack"})
	gw := e.fakeGateway("gw1", watch.Reply{})
	conn := connid.ID{Node: "gw1", Epoch: 7, Seq: 3}.String()
	john := e.userToken("john")
	q := url.Values{"connection_id": {conn}, "user_id": {"john"}}

	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john, query: q, body: map[string]any{
		"data": map[string]any{"members": []any{"john", "jack"}}, "watch": true, "presence": true, "state": true}})
	r := gw.next(t)
	if r.ConnID != conn || r.UserID != "john" || !slices.Equal(r.CIDs, []string{"messaging:talk"}) || r.Remove || len(r.Users) != 0 {
		t.Errorf("channel watch request %+v", r)
	}

	e.queryUsers(john, map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": []any{"jack", "john"}}}, "presence": true}, q)
	r = gw.next(t)
	slices.Sort(r.Users)
	if r.ConnID != conn || r.UserID != "john" || !slices.Equal(r.Users, []string{"jack", "john"}) {
		t.Errorf("queryUsers watch request %+v", r)
	}

	e.ok(req{method: "POST", path: "/channels", tok: john, query: q, body: map[string]any{"filter_conditions": map[string]any{"members": map[string]any{"$in": []any{"john"}}}, "watch": true, "state": true}})
	if r = gw.next(t); !slices.Equal(r.CIDs, []string{"messaging:talk"}) {
		t.Errorf("queryChannels watch request %+v", r)
	}

	e.ok(req{method: "POST", path: "/channels/messaging/talk/stop-watching", tok: john, query: q, body: map[string]any{}})
	if r = gw.next(t); !r.Remove || !slices.Equal(r.CIDs, []string{"messaging:talk"}) {
		t.Errorf("stop-watching request %+v", r)
	}

	// Without presence/watch, or server-side, nothing is registered.
	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john, query: q, body: map[string]any{"state": true}})
	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: e.admin, query: q, body: map[string]any{"watch": true}})
	select {
	case r := <-gw.reqs:
		t.Errorf("unexpected watch request %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestUnknownConnectionIsCode46(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"})
	e.fakeGateway("gw1", watch.Reply{NotFound: true})
	john := e.userToken("john")
	for _, node := range []string{"gw1", "gone"} {
		q := url.Values{"connection_id": {connid.ID{Node: node, Epoch: 1, Seq: 1}.String()}}
		e.fails(req{method: "POST", path: "/channels/messaging/c/query", tok: john, query: q, body: map[string]any{"watch": true}}, 400, 46)
		b, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": "john"}, "presence": true})
		e.fails(req{method: "GET", path: "/users", tok: john, query: url.Values{"payload": {string(b)}, "connection_id": q["connection_id"]}}, 400, 46)
	}
	e.fails(req{method: "POST", path: "/channels/messaging/c/query", tok: john, query: url.Values{"connection_id": {"not a conn id"}}, body: map[string]any{"watch": true}}, 400, 4)
}

func TestEscapedChannelIDsAreUnescaped(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john@x"})
	john := e.userToken("john@x")
	out := e.ok(req{method: "POST", path: "/channels/messaging/room%40home/query", tok: john, body: map[string]any{"data": map[string]any{"members": []any{"john@x"}}}})
	if id := out["channel"].(map[string]any)["id"]; id != "room@home" {
		t.Errorf("channel id %v, want room@home", id)
	}
	if got := e.memberships("john@x"); !slices.Equal(got, []string{"messaging:room@home"}) {
		t.Errorf("memberships %v", got)
	}
	e.ok(req{method: "DELETE", path: "/channels/messaging/room%40home", tok: john})
}

// channelEvents subscribes to the subject of channel typ:id.
func (e *env) channelEvents(typ, id string) *nats.Subscription {
	e.t.Helper()
	sub, err := e.nc.SubscribeSync(subject.ChannelEvents(typ, id))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// nextChannelEvent is the next event on sub, which must have type typ and
// the relay headers of a channel event for cid with dedup key key.
func nextChannelEvent(t *testing.T, sub *nats.Subscription, typ, cid, key string) (map[string]any, event.Meta) {
	t.Helper()
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no %s event: %v", typ, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev["type"] != typ {
		t.Fatalf("got a %v event, want %s: %v", ev["type"], typ, ev)
	}
	ctype, cidID, _ := strings.Cut(cid, ":")
	if ev["cid"] != cid || ev["channel_type"] != ctype || ev["channel_id"] != cidID {
		t.Errorf("%s: cid %v channel_type %v channel_id %v, want %s", typ, ev["cid"], ev["channel_type"], ev["channel_id"], cid)
	}
	if at, _ := ev["created_at"].(string); at == "" {
		t.Errorf("%s has no created_at: %v", typ, ev)
	} else if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		t.Errorf("%s created_at %q: %v", typ, at, err)
	}
	meta, ok := event.ReadMeta(msg)
	if _, onCID, _ := subject.ParseEvents(msg.Subject); !ok || meta.Stream != event.StreamChannel || meta.User != key || onCID != cid {
		t.Errorf("%s on %s meta %+v, want stream %q, key %q, on the subject of %s", typ, msg.Subject, meta, event.StreamChannel, key, cid)
	}
	return ev, meta
}

// checkMemberEvent checks the member and user of a member.added/removed.
func checkMemberEvent(t *testing.T, ev map[string]any, user string, online bool) {
	t.Helper()
	m, _ := ev["member"].(map[string]any)
	mu, _ := m["user"].(map[string]any)
	u, _ := ev["user"].(map[string]any)
	if m["user_id"] != user || mu["id"] != user || m["channel_role"] != "channel_member" || m["created_at"] == nil || m["updated_at"] == nil {
		t.Errorf("%s member = %v, want %s's member record with its user", ev["type"], m, user)
	}
	if u["id"] != user || u["online"] != online || mu["online"] != online {
		t.Errorf("%s user = %v (member user %v), want %s online=%v", ev["type"], u, mu, user, online)
	}
	if _, shown := u["invisible"]; shown {
		t.Errorf("%s shows the invisible flag to watchers: %v", ev["type"], u)
	}
}

func (e *env) memberRevision(typ, id, user string) uint64 {
	e.t.Helper()
	entry, err := e.st.Members.Get(context.Background(), store.MemberKey(typ, id, user))
	if err != nil {
		e.t.Fatal(err)
	}
	return entry.Revision()
}

func (e *env) channelRevision(typ, id string) uint64 {
	e.t.Helper()
	entry, err := e.st.Channels.Get(context.Background(), store.ChannelKey(typ, id))
	if err != nil {
		e.t.Fatal(err)
	}
	return entry.Revision()
}

func TestMembershipChangesSendStreamsEvents(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john", "name": "John"}, map[string]any{"id": "jack", "name": "Jack"},
		map[string]any{"id": "jill"}, map[string]any{"id": "joe", "invisible": true})
	e.setOnline("jack", time.Now().UTC())
	e.setOnline("joe", time.Now().UTC())
	r, err := route.New(t.Context(), e.st)
	if err != nil {
		t.Fatal(err)
	}
	routed := func(user string) bool {
		ms, _, err := store.Get[model.Memberships](t.Context(), e.st.Memberships, store.Key(user))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return slices.Contains(r.PresenceChannels(ms), "messaging:talk")
	}
	john := e.userToken("john")
	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john, body: map[string]any{"data": map[string]any{"members": []any{"john"}}}})
	const cid = "messaging:talk"
	sub := e.channelEvents("messaging", "talk")

	// addMembers: one member.added per new member, in order; already
	// members get none. Routing follows before the answer.
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"add_members": []any{"jack", "john", map[string]any{"user_id": "jill"}, "joe"}}})
	if !routed("jack") || !routed("jill") {
		t.Error("the new members' presence is not routed to the channel once addMembers has answered")
	}
	var jackRev uint64
	for _, want := range []struct {
		user   string
		online bool
	}{{"jack", true}, {"jill", false}, {"joe", false}} {
		ev, meta := nextChannelEvent(t, sub, event.MemberAdded, cid, cid+"/"+want.user)
		checkMemberEvent(t, ev, want.user, want.online)
		rev := e.memberRevision("messaging", "talk", want.user)
		if meta.Version != rev {
			t.Errorf("member.added of %s has version %d, want its member key's revision %d", want.user, meta.Version, rev)
		}
		if want.user == "jack" {
			jackRev = rev
		}
		if ev["channel_member_count"] != 4.0 {
			t.Errorf("channel_member_count = %v, want 4", ev["channel_member_count"])
		}
	}
	if u, _ := e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john})["members"].([]any); len(u) != 4 {
		t.Errorf("the channel has %d members after the add, want 4", len(u))
	}

	// removeMembers: member.removed with the member as it was.
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: e.admin, body: map[string]any{"remove_members": []any{"jack", "nobody"}}})
	if routed("jack") {
		t.Error("a removed member's presence is still routed to the channel after removeMembers answered")
	}
	ev, meta := nextChannelEvent(t, sub, event.MemberRemoved, cid, cid+"/jack")
	checkMemberEvent(t, ev, "jack", true)
	if meta.Version <= jackRev {
		t.Errorf("member.removed version %d, want past the added member's %d", meta.Version, jackRev)
	}
	removedRev := meta.Version
	// Added again, the member's events are newer than its removal's.
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"add_members": []any{"jack"}}})
	if _, again := nextChannelEvent(t, sub, event.MemberAdded, cid, cid+"/jack"); again.Version <= removedRev {
		t.Errorf("member.added after a removal has version %d, not newer than the removal's %d", again.Version, removedRev)
	}
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"remove_members": []any{"jack"}}})
	nextChannelEvent(t, sub, event.MemberRemoved, cid, cid+"/jack")

	// One call adding and removing: the net change only. jill was a member
	// and is removed; jack was not and stays out.
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"add_members": []any{"jack"}, "remove_members": []any{"jack", "jill"}}})
	ev, _ = nextChannelEvent(t, sub, event.MemberRemoved, cid, cid+"/jill")
	checkMemberEvent(t, ev, "jill", false)
	if routed("jack") || routed("jill") {
		t.Error("memberships do not follow the net change")
	}

	// update(data): channel.updated with the channel as in the channel state.
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"data": map[string]any{"color": "blue"}}})
	ev, meta = nextChannelEvent(t, sub, event.ChannelUpdated, cid, cid)
	ch, _ := ev["channel"].(map[string]any)
	if ch["color"] != "blue" || ch["cid"] != cid || ch["id"] != "talk" || ch["type"] != "messaging" || ch["member_count"] != 2.0 {
		t.Errorf("channel.updated channel = %v", ch)
	}
	if cb, _ := ch["created_by"].(map[string]any); cb["id"] != "john" || cb["name"] != "John" {
		t.Errorf("channel.created_by = %v, want john's user", ch["created_by"])
	}
	if cfg, _ := ch["config"].(map[string]any); cfg["connect_events"] != true {
		t.Errorf("channel.config = %v", ch["config"])
	}
	if _, ok := ch["own_capabilities"]; ok {
		t.Error("channel.updated carries own_capabilities, which would replace each watcher's own")
	}
	if u, _ := ev["user"].(map[string]any); u["id"] != "john" {
		t.Errorf("channel.updated user = %v, want the caller", ev["user"])
	}
	if meta.Version != e.channelRevision("messaging", "talk") {
		t.Errorf("channel.updated version %d, want the channel's revision", meta.Version)
	}

	// updatePartial: channel.updated too; server-side, without a user.
	e.ok(req{method: "PATCH", path: "/channels/messaging/talk", tok: e.admin, body: map[string]any{"set": map[string]any{"mood": "calm"}, "unset": []any{"color"}}})
	ev, meta = nextChannelEvent(t, sub, event.ChannelUpdated, cid, cid)
	if ch, _ := ev["channel"].(map[string]any); ch["mood"] != "calm" || ch["color"] != nil {
		t.Errorf("channel.updated after updatePartial: %v", ch)
	}
	if _, ok := ev["user"]; ok {
		t.Errorf("a server-side update names a user: %v", ev["user"])
	}
	lastRev := meta.Version

	// delete: channel.deleted, newer than every update, and nothing routed.
	e.ok(req{method: "DELETE", path: "/channels/messaging/talk", tok: john})
	ev, meta = nextChannelEvent(t, sub, event.ChannelDeleted, cid, cid)
	if ch, _ := ev["channel"].(map[string]any); ch["cid"] != cid || ch["deleted_at"] == nil || ch["mood"] != "calm" {
		t.Errorf("channel.deleted channel = %v", ch)
	}
	if meta.Version <= lastRev {
		t.Errorf("channel.deleted version %d is not newer than the last update's %d", meta.Version, lastRev)
	}
	if routed("john") || routed("joe") {
		t.Error("a deleted channel's members are still routed to it")
	}
	// Created again, the channel's events are newer than its deletion.
	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john, body: map[string]any{"data": map[string]any{"members": []any{"john"}}}})
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"data": map[string]any{"round": 2.0}}})
	if _, again := nextChannelEvent(t, sub, event.ChannelUpdated, cid, cid); again.Version <= meta.Version {
		t.Errorf("an update of the re-created channel has version %d, not newer than its deletion's %d", again.Version, meta.Version)
	}
}

func TestNoEventsForAFailedChange(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "john"}, map[string]any{"id": "eve"})
	john := e.userToken("john")
	e.ok(req{method: "POST", path: "/channels/messaging/talk/query", tok: john, body: map[string]any{"data": map[string]any{"members": []any{"john"}}}})
	sub := e.channelEvents("messaging", "talk")
	e.fails(req{method: "POST", path: "/channels/messaging/talk", tok: e.userToken("eve"), body: map[string]any{"add_members": []any{"eve"}}}, 403, 17)
	e.fails(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"add_members": []any{"ghost"}}}, 400, 4)
	e.fails(req{method: "DELETE", path: "/channels/messaging/talk", tok: e.userToken("eve")}, 403, 17)
	// Marker: the next event is the one of the change that succeeds.
	e.ok(req{method: "POST", path: "/channels/messaging/talk", tok: john, body: map[string]any{"add_members": []any{"eve"}}})
	nextChannelEvent(t, sub, event.MemberAdded, "messaging:talk", "messaging:talk/eve")
}
