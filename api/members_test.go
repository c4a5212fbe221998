package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// queryMembers runs GET /members with payload as tok and returns the user
// ids of the members.
func (e *env) queryMembers(tok string, payload map[string]any) []string {
	e.t.Helper()
	b, _ := json.Marshal(payload)
	out := e.ok(req{method: "GET", path: "/members", tok: tok, query: url.Values{"payload": {string(b)}}})
	ids := []string{}
	for _, m := range out["members"].([]any) {
		ids = append(ids, m.(map[string]any)["user_id"].(string))
	}
	return ids
}

// seedUsers writes users straight into KV (what this test is about is
// their membership, which goes through the API).
func (e *env) seedUsers(ids []string) {
	e.t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, id := range ids {
		b, _ := json.Marshal(model.User{ID: id, Role: "user", Name: "Member " + id, CreatedAt: now, UpdatedAt: now})
		if _, err := js.PublishAsync("$KV."+store.BucketUsers+"."+store.Key(id), b); err != nil {
			e.t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		e.t.Fatal("users not written")
	}
}

// TestAChannelOfTenThousandMembers: members are added through the API up to
// the limit; a watch gets the first page of them and the count, never all;
// queryMembers pages through every member with a cursor, finds the online
// ones by activity, and deleting the channel removes every member and
// membership.
func TestAChannelOfTenThousandMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("adds 10,000 members")
	}
	e := newEnv(t)
	const n = api.MaxChannelMembers
	ids := make([]string, n+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%05d", i)
	}
	e.seedUsers(ids)
	e.ok(req{method: "POST", path: "/channels/messaging/big/query", tok: e.admin, body: map[string]any{
		"data": map[string]any{"members": ids[:100], "created_by_id": ids[0]}}})
	for i := 100; i < n; i += 100 {
		e.ok(req{method: "POST", path: "/channels/messaging/big", tok: e.admin, body: map[string]any{"add_members": ids[i : i+100]}})
	}
	out := e.fails(req{method: "POST", path: "/channels/messaging/big", tok: e.admin, body: map[string]any{"add_members": ids[n:]}}, 400, 4)
	t.Logf("member %d: %v", n+1, out["message"])

	last := e.userToken(ids[n-1])
	st := e.ok(req{method: "POST", path: "/channels/messaging/big/query", tok: last, body: map[string]any{"state": true, "watch": true, "presence": true}})
	page := []string{}
	for _, m := range st["members"].([]any) {
		page = append(page, m.(map[string]any)["user_id"].(string))
	}
	if !slices.Equal(page, ids[:100]) {
		t.Errorf("watch: %d members %v..., want the first 100 to join", len(page), page[:min(3, len(page))])
	}
	if c := st["channel"].(map[string]any)["member_count"]; c != float64(n) {
		t.Errorf("member_count = %v, want %d", c, n)
	}
	if ms, _ := st["membership"].(map[string]any); ms["user_id"] != ids[n-1] {
		t.Errorf("membership = %v, want the caller's, off the page", st["membership"])
	}

	// Every member once, in user id order, 300 a page.
	var all []string
	for cursor := ""; ; {
		payload := map[string]any{"type": "messaging", "id": "big", "sort": []any{map[string]any{"field": "user_id", "direction": 1}}, "limit": api.MaxMemberLimit}
		if cursor != "" {
			payload["user_id_gt"] = cursor
		}
		got := e.queryMembers(last, payload)
		if len(got) == 0 {
			break
		}
		all = append(all, got...)
		cursor = got[len(got)-1]
	}
	if !slices.Equal(all, ids[:n]) {
		t.Errorf("paging by user_id_gt gave %d members, want all %d once, in order", len(all), n)
	}

	// The online members by activity: 40 connected at increasing times.
	at := time.Now().UTC().Add(-time.Hour)
	for i := range 40 {
		e.setOnline(ids[i*200], at.Add(time.Duration(i)*time.Second))
	}
	online := e.queryMembers(last, map[string]any{"type": "messaging", "id": "big", "filter_conditions": map[string]any{"online": true},
		"sort": []any{map[string]any{"field": "last_active", "direction": -1}}, "limit": 30})
	var want []string
	for i := 39; i >= 10; i-- {
		want = append(want, ids[i*200])
	}
	if !slices.Equal(online, want) {
		t.Errorf("online members by last_active: got %v, want %v", online, want)
	}

	began := time.Now()
	e.ok(req{method: "DELETE", path: "/channels/messaging/big", tok: e.admin})
	t.Logf("deleting the channel, its %d members and their memberships took %v", n, time.Since(began).Round(time.Millisecond))
	keys, err := e.st.Members.ListKeysFiltered(context.Background(), store.MembersOf("messaging", "big"))
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	for range keys.Keys() {
		left++
	}
	if left > 0 {
		t.Errorf("%d member keys left after the delete", left)
	}
	for _, u := range []string{ids[0], ids[n/2], ids[n-1]} {
		if got := e.memberships(u); len(got) != 0 {
			t.Errorf("memberships of %s after the delete: %v", u, got)
		}
	}
}

// TestInlineMembersMoveToTheirOwnKeys: channels stored with their members
// inline (before members had keys of their own) have them moved when api
// nodes start, two at once here, and answer as before.
func TestInlineMembersMoveToTheirOwnKeys(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann"}, map[string]any{"id": "bob"}, map[string]any{"id": "cat"})
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	old := map[string][]model.Member{
		"old": {{UserID: "ann", ChannelRole: "channel_member", CreatedAt: at, UpdatedAt: at},
			{UserID: "bob", ChannelRole: "channel_moderator", CreatedAt: at.Add(time.Second), UpdatedAt: at, Custom: map[string]any{"code": "007"}}},
		"older": {{UserID: "cat", ChannelRole: "channel_member", CreatedAt: at, UpdatedAt: at}},
	}
	for id, members := range old {
		ch := model.Channel{Type: "messaging", ID: id, CreatedByID: "ann", CreatedAt: at, UpdatedAt: at, Inline: members}
		b, _ := json.Marshal(ch)
		if _, err := e.st.Channels.Put(context.Background(), store.ChannelKey("messaging", id), b); err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			b, _ := json.Marshal(model.Memberships{CIDs: []string{"messaging:" + id}})
			if _, err := e.st.Memberships.Put(context.Background(), store.Key(m.UserID), b); err != nil {
				t.Fatal(err)
			}
		}
	}

	errs := make(chan error, 2)
	for _, node := range []string{"api-2", "api-3"} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv, err := api.New(ctx, api.Config{APIKey: testKey, APISecret: testSecret, NodeName: node, IndexDir: t.TempDir()}, e.nc, nil)
			if err == nil {
				err = srv.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	for id, members := range old {
		entry, err := e.st.Channels.Get(context.Background(), store.ChannelKey("messaging", id))
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]any
		_ = json.Unmarshal(entry.Value(), &raw)
		if _, ok := raw["members"]; ok {
			t.Errorf("channel %s still holds its members: %s", id, entry.Value())
		}
		for _, want := range members {
			got, _, err := store.Get[model.Member](context.Background(), e.st.Members, store.MemberKey("messaging", id, want.UserID))
			if err != nil || !got.Same(want) || !got.CreatedAt.Equal(want.CreatedAt) {
				t.Errorf("member %s of %s: %+v (%v), want %+v", want.UserID, id, got, err, want)
			}
		}
	}
	// The node that was running before follows: the answers are the old ones.
	st := e.ok(req{method: "POST", path: "/channels/messaging/old/query", tok: e.userToken("bob"), body: map[string]any{"state": true}})
	if got := memberIDs(st); !slices.Equal(got, []string{"ann", "bob"}) || st["channel"].(map[string]any)["member_count"] != 2.0 {
		t.Errorf("old channel: members %v, channel %v", got, st["channel"])
	}
	if ms, _ := st["membership"].(map[string]any); ms["channel_role"] != "channel_moderator" || ms["code"] != "007" {
		t.Errorf("bob's membership %v", st["membership"])
	}
	if got := e.queryMembers(e.admin, map[string]any{"type": "messaging", "id": "old", "filter_conditions": map[string]any{"code": "007"}}); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("queryMembers by a custom field: %v", got)
	}
	out := e.ok(req{method: "POST", path: "/channels", tok: e.userToken("cat"), body: map[string]any{"filter_conditions": map[string]any{"members": map[string]any{"$in": []any{"cat"}}}}})
	if chans := out["channels"].([]any); len(chans) != 1 || chans[0].(map[string]any)["channel"].(map[string]any)["cid"] != "messaging:older" {
		t.Errorf("cat's channels: %v", chans)
	}
}

// TestAMemberCannotMakeItselfReadOnline: custom member fields named as the
// user's (online, name) never stand for them in queryMembers, so an
// invisible or offline member cannot appear online by setting its own.
func TestAMemberCannotMakeItselfReadOnline(t *testing.T) {
	e := newEnv(t)
	e.upsert(map[string]any{"id": "ann", "name": "Ann"}, map[string]any{"id": "eve", "name": "Eve", "invisible": true})
	e.setOnline("ann", time.Now().UTC())
	e.setOnline("eve", time.Now().UTC())
	e.ok(req{method: "POST", path: "/channels/messaging/room/query", tok: e.userToken("ann"), body: map[string]any{"data": map[string]any{"members": []any{"ann", "eve"}}}})
	e.ok(req{method: "PATCH", path: "/channels/messaging/room/member", tok: e.userToken("eve"), body: map[string]any{"set": map[string]any{"online": true, "name": "Ann", "user.online": true}}})
	for _, f := range []map[string]any{{"online": true}, {"user.online": true}, {"name": "Ann"}} {
		if got := e.queryMembers(e.userToken("ann"), map[string]any{"type": "messaging", "id": "room", "filter_conditions": f}); !slices.Equal(got, []string{"ann"}) {
			t.Errorf("queryMembers %v: %v, want ann alone", f, got)
		}
	}
}
