package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/subject"
)

// The fuzz targets of this file feed request bodies through decode, as the
// handlers do, then to the checks each handler makes before it reads or
// writes anything. None may panic; every refusal must be an SDK error
// (*apierror.Error) of bad input (4), not allowed (17) or too large (22) with
// its HTTP status, never a raw Go error, which the client would see as an
// internal error; and what is accepted must keep the documented bounds.

// fuzzEcho makes the contexts decode reads bodies from.
var fuzzEcho = echo.New()

// decodeBody decodes body into v as a handler's decode does.
func decodeBody(body []byte, v any) error {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	return decode(fuzzEcho.NewContext(req, httptest.NewRecorder()), v)
}

// fuzzCaller is the caller of every fuzzed request: a server-side client, or
// the user ann.
func fuzzCaller(server bool) caller {
	if server {
		return caller{server: true}
	}
	return caller{user: "ann"}
}

var statusOf = map[int]int{
	apierror.CodeInput:         http.StatusBadRequest,
	apierror.CodeNotAllowed:    http.StatusForbidden,
	apierror.CodePayloadTooBig: http.StatusRequestEntityTooLarge,
}

// sdkError fails unless err is an SDK error with one of codes and the HTTP
// status of its code.
func sdkError(t *testing.T, what string, err error, codes ...int) {
	t.Helper()
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		t.Fatalf("%s failed with %T %v, not an SDK error", what, err, err)
	}
	if !slices.Contains(codes, ae.Code) || ae.StatusCode != statusOf[ae.Code] || ae.Message == "" {
		t.Fatalf("%s failed with %+v; want one of codes %v with its status", what, ae, codes)
	}
}

// refusals are the codes a caller may be refused with: client-side callers
// also what only server-side callers may do.
func refusals(server bool) []int {
	if server {
		return []int{apierror.CodeInput}
	}
	return []int{apierror.CodeInput, apierror.CodeNotAllowed}
}

// checkMembers fails unless members were rightly accepted from input (the
// members list as decoded): every member of the input once, with a valid
// id and a channel role, a moderator only by a server-side caller.
func checkMembers(t *testing.T, input any, members []memberInput, server bool) {
	t.Helper()
	list, _ := input.([]any)
	if len(members) > MaxMembersPerCall || len(members) > len(list) {
		t.Fatalf("%d members accepted of %d given", len(members), len(list))
	}
	seen := map[string]bool{}
	for _, m := range members {
		if err := subject.CheckUserID(m.UserID); err != nil {
			t.Fatalf("member %q accepted: %v", m.UserID, err)
		}
		if seen[m.UserID] {
			t.Fatalf("member %q accepted twice", m.UserID)
		}
		seen[m.UserID] = true
		if m.ChannelRole != "" && m.ChannelRole != roleMember && (m.ChannelRole != roleModerator || !server) {
			t.Fatalf("member %q accepted with channel_role %q (server-side: %v)", m.UserID, m.ChannelRole, server)
		}
		if m.Custom != nil && len(m.Custom) == 0 {
			t.Fatalf("member %q: empty custom fields are not nil", m.UserID)
		}
		for k := range m.Custom {
			if model.MemberReserved[k] || k == "" {
				t.Fatalf("member %q: custom fields hold %q", m.UserID, k)
			}
		}
		if b, err := json.Marshal(m.Custom); err != nil || len(b) > MaxMemberCustomBytes {
			t.Fatalf("member %q: custom fields of %d bytes accepted (%v)", m.UserID, len(b), err)
		}
		if got := m.member(time.Now()); got.ChannelRole == "" {
			t.Fatalf("member %q joins without a channel_role", m.UserID)
		}
	}
	for _, e := range list {
		id, _ := e.(string)
		if m, ok := e.(map[string]any); ok {
			id, _ = m["user_id"].(string)
		}
		if !seen[id] {
			t.Fatalf("member %v given, but not among those accepted", e)
		}
	}
}

// checkCustom fails unless custom is what customFields may accept: none of
// the channel's own fields, within MaxChannelCustomBytes, nil when empty.
func checkCustom(t *testing.T, custom map[string]any) {
	t.Helper()
	if custom != nil && len(custom) == 0 {
		t.Fatal("empty custom fields are not nil")
	}
	for k := range custom {
		if model.ChannelReserved[k] || k == "" {
			t.Fatalf("custom fields hold %q", k)
		}
	}
	if b, err := json.Marshal(custom); err != nil || len(b) > MaxChannelCustomBytes {
		t.Fatalf("custom fields of %d bytes accepted (%v)", len(b), err)
	}
}

// FuzzParseMembers: members to add, given as user ids or {user_id,
// channel_role}. parseMembers accepts every member given once (see
// checkMembers) or refuses with code 4, or 17 for a client-side moderator;
// the id of the distinct channel of the accepted members is a valid channel
// id that does not depend on their order. As remove_members, parseIDs
// accepts only valid ids, at most MaxMembersPerCall.
func FuzzParseMembers(f *testing.F) {
	for _, seed := range []string{
		`["ann", "bob", "ann"]`,
		`[{"user_id": "ann", "channel_role": "channel_moderator"}, {"user_id": "bob"}]`,
		`[{"user_id": "ann", "channel_role": "owner"}]`,
		`[{"user_id": "ann", "code_name": "006", "user": {"id": "x"}, "detail": {"n": [1]}}, {"user_id": "bob", "": 1}]`,
		`[{"user_id": "ann", "blob": "` + strings.Repeat("b", MaxMemberCustomBytes) + `"}]`,
		`[{"id": "ann"}]`,
		`["a.b"]`,
		`[1, null]`,
		`{"ann": true}`,
		`null`,
		`[]`,
		`[` + strings.Repeat(`"u",`, MaxMembersPerCall) + `"u"]`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, server bool) {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		members, err := parseMembers(v, fuzzCaller(server))
		if err != nil {
			sdkError(t, "parseMembers", err, refusals(server)...)
		} else {
			checkMembers(t, v, members, server)
			ids := make([]string, len(members))
			for i, m := range members {
				ids[i] = m.UserID
			}
			id := distinctID(ids)
			if err := subject.CheckChannelID(id); err != nil {
				t.Fatalf("distinct channel id %q: %v", id, err)
			}
			slices.Reverse(ids)
			if again := distinctID(append(ids, ids...)); again != id {
				t.Fatalf("the same members in another order make channel %q, not %q", again, id)
			}
		}

		list, ok := v.([]any)
		if !ok {
			return
		}
		ids := make([]string, 0, len(list))
		for _, e := range list {
			if s, ok := e.(string); ok {
				ids = append(ids, s)
			}
		}
		if err := parseIDs(ids, "remove_members"); err != nil {
			sdkError(t, "parseIDs", err, apierror.CodeInput)
			return
		}
		if len(ids) > MaxMembersPerCall {
			t.Fatalf("parseIDs accepted %d ids", len(ids))
		}
		for _, id := range ids {
			if err := subject.CheckUserID(id); err != nil {
				t.Fatalf("parseIDs accepted %q: %v", id, err)
			}
		}
	})
}

// FuzzChannelBodies: one body as each channel endpoint reads it. The query
// of a channel (POST .../query): a member page within its limits, members
// as checkMembers wants them, a valid creator or none, custom fields as
// checkCustom wants them. An update (POST /channels/{type}/{id}): the same
// of add_members and data, valid remove_members. A patch (PATCH): unset
// names of 1 to 256 bytes; applied to existing fields it leaves them
// untouched and gives fields as checkCustom wants them, with every field
// set that it may set, none it unsets, and the others as they were.
func FuzzChannelBodies(f *testing.F) {
	for _, seed := range []string{
		`{"data": {"members": ["ann", "bob"], "created_by_id": "ann", "color": "red"}, "members": {"limit": 10, "offset": 5}}`,
		`{"data": {"created_by": {"id": "bob"}, "name": "x", "config": {}, "": 1}, "watch": true, "presence": true}`,
		`{"data": {"created_by": "a.b"}}`,
		`{"members": {"limit": 0, "offset": -1}}`,
		`{"members": {"limit": 301}}`,
		`{"members": {"limit": 1e30}}`,
		`{"add_members": ["bob", {"user_id": "cat", "channel_role": "channel_moderator"}], "remove_members": ["dan"], "data": {"topic": "t"}}`,
		`{"add_members": [], "remove_members": ["a b"], "data": {}}`,
		`{"add_moderators": ["ann"], "demote_moderators": ["bob"], "assign_roles": [{"user_id": "cat", "channel_role": "channel_moderator"}]}`,
		`{"assign_roles": [{"user_id": "cat", "channel_role": "admin"}], "add_moderators": ["a b"]}`,
		`{"set": {"channel_role": "channel_member", "archived": true, "code_name": "007"}, "unset": ["pinned", "user_id"]}`,
		`{"set": {"pinned": "yes"}, "unset": ["channel_role"]}`,
		`{"set": {"color": "blue", "id": "x", "members": [], "": 2}, "unset": ["size"]}`,
		`{"set": {"color": "blue"}, "unset": ["color", ""]}`,
		`{"set": {"detail.topic": "x", "detail.new.deep": [1, {"a": null}]}, "unset": ["detail.rating", "color.nothing", "none.at.all"]}`,
		`{"set": {"color.hue": 1}}`,
		`{"set": {"detail": {}, "detail.topic": "y"}, "unset": ["detail.topic.x"]}`,
		`{"set": {"a..b": 1, ".a": 2}, "unset": ["a."]}`,
		`{"set": {"blob": "` + strings.Repeat("b", MaxChannelCustomBytes) + `"}}`,
		`{"data": "not an object"}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, server bool) {
		cl := fuzzCaller(server)

		var q channelQuery
		if err := decodeBody(body, &q); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
		} else if limit, offset, err := q.memberPage(); err != nil {
			sdkError(t, "memberPage", err, apierror.CodeInput)
		} else if limit < 1 || limit > MaxMemberLimit || offset < 0 || offset > MaxChannelMembers {
			t.Fatalf("member page of limit %d, offset %d accepted", limit, offset)
		} else if d, err := parseChannelData(q.Data, cl); err != nil {
			sdkError(t, "parseChannelData", err, refusals(server)...)
		} else {
			checkMembers(t, q.Data["members"], d.members, server)
			if d.createdBy != "" && subject.CheckUserID(d.createdBy) != nil {
				t.Fatalf("creator %q accepted", d.createdBy)
			}
			checkCustom(t, d.custom)
		}

		var u channelUpdate
		if err := decodeBody(body, &u); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
		} else if add, roles, custom, err := u.parse(cl); err != nil {
			sdkError(t, "channelUpdate.parse", err, refusals(server)...)
		} else {
			if len(roles) > 0 && !server || len(roles) > MaxMembersPerCall {
				t.Fatalf("%d role changes accepted (server-side: %v)", len(roles), server)
			}
			for _, r := range roles {
				if subject.CheckUserID(r.UserID) != nil || r.ChannelRole != roleMember && r.ChannelRole != roleModerator {
					t.Fatalf("role change %+v accepted", r)
				}
			}
			if u.AddMembers != nil {
				checkMembers(t, u.AddMembers, add, server)
			}
			if len(u.RemoveMembers) > MaxMembersPerCall || slices.ContainsFunc(u.RemoveMembers, func(id string) bool { return subject.CheckUserID(id) != nil }) {
				t.Fatalf("remove_members %q accepted", u.RemoveMembers)
			}
			checkCustom(t, custom)
		}

		var p fieldPatch
		if err := decodeBody(body, &p); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
			return
		}
		if err := p.check(); err != nil {
			sdkError(t, "fieldPatch.check", err, apierror.CodeInput)
			return
		}
		for _, k := range append(slices.Collect(maps.Keys(p.Set)), p.Unset...) {
			if checkPath(k) != nil {
				t.Fatalf("field path %q accepted", k)
			}
		}
		before := map[string]any{"color": "red", "size": 3.0, "tags": []any{"a"}, "detail": map[string]any{"rating": 5.0, "topic": "t"}}
		was := deepCopy(before)
		after, err := p.apply(before, model.ChannelReserved)
		if !reflect.DeepEqual(before, was) {
			t.Fatalf("apply changed the channel's fields in place: %v, was %v", before, was)
		}
		if err != nil {
			sdkError(t, "fieldPatch.apply", err, apierror.CodeInput)
			return
		}
		if custom, err := customFields(after); err != nil {
			sdkError(t, "customFields", err, apierror.CodeInput)
		} else {
			checkCustom(t, custom)
		}
		// Every unset path is gone; every set path holds its value unless
		// an unset path covers it, or another set path nests in it or it
		// in another (which of those wins is the order of names).
		path := func(k string) []string { return strings.Split(k, ".") }
		for _, k := range p.Unset {
			if _, there := lookupPath(after, path(k)); there && !model.ChannelReserved[path(k)[0]] {
				t.Fatalf("%q unset, but kept in %v", k, after)
			}
		}
		covers := func(a, b string) bool { return a == b || strings.HasPrefix(b, a+".") }
		for k, v := range p.Set {
			if model.ChannelReserved[path(k)[0]] {
				if got, there := lookupPath(after, path(k)); there && !reflect.DeepEqual(got, lookupOr(before, path(k))) {
					t.Fatalf("reserved %q changed to %v", k, got)
				}
				continue
			}
			if slices.ContainsFunc(p.Unset, func(u string) bool { return covers(u, k) }) {
				continue
			}
			nested := false
			for o := range p.Set {
				nested = nested || o != k && (covers(o, k) || covers(k, o))
			}
			if got, there := lookupPath(after, path(k)); !nested && (!there || !reflect.DeepEqual(got, v)) {
				t.Fatalf("%q set to %v, but reads %v (there: %v) in %v", k, v, got, there, after)
			}
		}
		// What no path touched is as it was.
		for k, v := range before {
			touched := slices.ContainsFunc(append(slices.Collect(maps.Keys(p.Set)), p.Unset...), func(q string) bool { return path(q)[0] == k })
			if !touched && !reflect.DeepEqual(after[k], v) {
				t.Fatalf("field %q untouched by %v, but %v became %v", k, p, v, after[k])
			}
		}

		// The same patch of a member (PATCH .../member): only the server
		// changes a role, to a valid one; the custom fields stay within
		// their bounds and never hold the member's own fields.
		now := time.Now()
		m := model.Member{UserID: "ann", ChannelRole: roleModerator, CreatedAt: now, UpdatedAt: now, Custom: map[string]any{"code_name": "006"}}
		got, err := memberPatch{p}.apply(m, cl, now.Add(time.Second))
		if err != nil {
			sdkError(t, "memberPatch.apply", err, refusals(server)...)
			return
		}
		if got.ChannelRole != m.ChannelRole && (!server || got.ChannelRole != roleMember && got.ChannelRole != roleModerator) {
			t.Fatalf("role changed to %q (server-side: %v)", got.ChannelRole, server)
		}
		for k := range got.Custom {
			if memberPatchReserved[k] {
				t.Fatalf("member custom fields hold %q", k)
			}
		}
		if b, _ := json.Marshal(got.Custom); len(b) > MaxMemberCustomBytes || got.Custom != nil && len(got.Custom) == 0 {
			t.Fatalf("member custom fields %v accepted", got.Custom)
		}
		if got.Same(m) != got.UpdatedAt.Equal(m.UpdatedAt) {
			t.Fatalf("updated_at %v for a member that changed: %v", got.UpdatedAt, !got.Same(m))
		}
	})
}

func lookupOr(obj map[string]any, names []string) any {
	v, _ := lookupPath(obj, names)
	return v
}

// deepCopy copies nested objects and lists, to tell whether apply changed
// anything in place.
func deepCopy(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// FuzzUserBodies: one body as POST /users (upsert) and PATCH /users
// (partial update) read it. An upsert is 1 to MaxUsersPerCall users with
// valid ids, the caller's own unless server-side, each within
// model.MaxUserBytes, with no other id inside. A partial update is the same
// number of users and ids, unset names of 1 to 256 bytes apart from the
// fields set, a role changed only server-side; and, the promise of checking
// before writing, applied to an existing profile it never fails, keeps the
// id and keeps name and status within their limits.
func FuzzUserBodies(f *testing.F) {
	for _, seed := range []string{
		`{"users": {"ann": {"id": "ann", "name": "Ann", "role": "admin", "teams": ["red"], "color": "green"}}}`,
		`{"users": {"ann": {"id": "bob"}, "bob": {}}}`,
		`{"users": {"a.b": {}}}`,
		`{"users": {"ann": {"invisible": "yes"}}}`,
		`{"users": {"ann": {"bio": "` + strings.Repeat("b", model.MaxUserBytes) + `"}}}`,
		`{"users": {}}`,
		`{"users": [{"id": "ann", "set": {"name": "Ann", "invisible": true, "online": true, "id": "x"}, "unset": ["status"]}]}`,
		`{"users": [{"id": "ann", "set": {"role": "admin"}}]}`,
		`{"users": [{"id": "ann", "unset": ["role", "id"]}]}`,
		`{"users": [{"id": "ann", "set": {"name": "x"}, "unset": ["name"]}]}`,
		`{"users": [{"id": "ann", "unset": [""]}]}`,
		`{"users": [{"id": "ann", "set": {"teams": ["a", 1]}}]}`,
		`{"users": [{"id": "bob", "set": {"status": "` + strings.Repeat("s", model.MaxStatusBytes+1) + `"}}]}`,
		`{"users": null}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, server bool) {
		cl := fuzzCaller(server)

		var up struct {
			Users map[string]json.RawMessage `json:"users"`
		}
		if err := decodeBody(body, &up); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
		} else if ids, inputs, err := parseUpserts(up.Users, cl); err != nil {
			sdkError(t, "parseUpserts", err, refusals(server)...)
		} else {
			if len(ids) == 0 || len(ids) > MaxUsersPerCall || len(inputs) != len(ids) || !slices.IsSorted(ids) {
				t.Fatalf("upsert of %d users accepted as ids %q", len(up.Users), ids)
			}
			for _, id := range ids {
				in := inputs[id]
				switch {
				case subject.CheckUserID(id) != nil:
					t.Fatalf("upsert of user %q accepted", id)
				case !server && id != cl.user:
					t.Fatalf("client-side upsert of another user %q accepted", id)
				case len(up.Users[id]) > model.MaxUserBytes:
					t.Fatalf("upsert of %d bytes accepted", len(up.Users[id]))
				case in.ID != "" && in.ID != id:
					t.Fatalf("upsert of user %q holds id %q", id, in.ID)
				case len(in.Name) > model.MaxNameBytes || len(in.Status) > model.MaxStatusBytes:
					t.Fatalf("upsert of a name of %d bytes, a status of %d accepted", len(in.Name), len(in.Status))
				}
			}
		}

		var pu struct {
			Users []partialUpdate `json:"users"`
		}
		if err := decodeBody(body, &pu); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
			return
		}
		if err := checkPartialUpdates(pu.Users, cl); err != nil {
			sdkError(t, "checkPartialUpdates", err, refusals(server)...)
			return
		}
		if len(pu.Users) == 0 || len(pu.Users) > MaxUsersPerCall {
			t.Fatalf("partial update of %d users accepted", len(pu.Users))
		}
		for _, p := range pu.Users {
			_, setsRole := p.Set["role"]
			switch {
			case subject.CheckUserID(p.ID) != nil:
				t.Fatalf("partial update of user %q accepted", p.ID)
			case !server && (p.ID != cl.user || setsRole || slices.Contains(p.Unset, "role")):
				t.Fatalf("client-side partial update %+v accepted", p)
			}
			for _, f := range p.Unset {
				if _, set := p.Set[f]; set || f == "" || len(f) > 256 {
					t.Fatalf("unset of field %q accepted with set %v", f, p.Set)
				}
			}
			// As saveUser's change does, on a profile that exists.
			u := model.User{ID: p.ID, Role: "user", Name: "Old", Teams: []string{"t"}, Custom: map[string]any{"k": "v"}, CreatedAt: time.Unix(1, 0)}
			for k, v := range p.Set {
				if err := u.Set(k, v); err != nil {
					t.Fatalf("checked partial update %+v fails on a profile: %v", p, err)
				}
			}
			for _, f := range p.Unset {
				if f != "id" {
					u.Unset(f)
				}
			}
			if u.ID != p.ID || len(u.Name) > model.MaxNameBytes || len(u.Status) > model.MaxStatusBytes {
				t.Fatalf("partial update %+v made profile %+v", p, u)
			}
			if !server && u.Role != "user" {
				t.Fatalf("client-side partial update %+v made role %q", p, u.Role)
			}
		}
	})
}

// FuzzQueryPayload: one input as the payload of GET /users, of GET /members
// (which also names a valid channel) and as the body of POST /channels. An accepted query has a limit between 1 and the call's
// maximum, an offset between 0 and MaxOffset, a sort (the default if none),
// a filter that matches without panicking and a page no longer than its
// limit; a channel query also has a member limit between 1 and
// MaxMemberLimit.
func FuzzQueryPayload(f *testing.F) {
	for _, seed := range []string{
		`{"filter_conditions": {"id": {"$in": ["ann", "bob"]}}, "sort": [{"field": "last_active", "direction": -1}], "limit": 10, "offset": 5, "presence": true}`,
		`{"filter_conditions": {"$or": [{"name": {"$autocomplete": "an"}}, {"online": true}]}}`,
		`{"filter_conditions": {"members": {"$in": ["ann"]}}, "sort": [{"field": "last_updated", "direction": -1}], "member_limit": 300, "watch": true}`,
		`{"filter_conditions": {"$and": [{"type": "messaging"}, {"cid": {"$in": ["messaging:a"]}}]}, "state": true}`,
		`{"limit": 0, "offset": 0}`,
		`{"limit": 101}`,
		`{"limit": -1}`,
		`{"offset": 1001}`,
		`{"limit": 9223372036854775808}`,
		`{"member_limit": 301}`,
		`{"filter_conditions": "id"}`,
		`{"filter_conditions": {"id": {"$regex": "."}}}`,
		`{"sort": {"field": "id"}}`,
		`{"filter_conditions": null, "sort": null}`,
		`{"type": "messaging", "id": "general", "filter_conditions": {"online": true}, "sort": [{"field": "last_active", "direction": -1}], "limit": 30}`,
		`{"type": "messaging", "members": ["ann", {"user_id": "bob"}], "user_id_gt": "ann", "created_at_before": "2026-01-01T00:00:00Z"}`,
		`{"type": "messaging", "id": "a", "created_at_after": "yesterday", "user_id_lt": "x"}`,
		`{"type": "a b", "id": "c"}`,
		``,
		`[`,
	} {
		f.Add(seed)
	}
	docs := []filter.Map{
		{"id": "ann", "name": "Ann Lee", "online": true, "role": "user", "created_at": time.Unix(1, 0).UTC(), "teams": []any{"red"}},
		{"id": "messaging:a", "cid": "messaging:a", "type": "messaging", "members": []string{"ann"}, "member_count": 1, "last_updated": time.Unix(2, 0).UTC()},
	}
	checkParsed := func(t *testing.T, what string, p parsed, maxLimit int) {
		t.Helper()
		if p.limit < 1 || p.limit > maxLimit || p.offset < 0 || p.offset > MaxOffset || len(p.sort) == 0 {
			t.Fatalf("%s accepted with limit %d, offset %d, sort %v", what, p.limit, p.offset, p.sort)
		}
		hits := make([]hit, 0, 2*maxLimit)
		for i := range cap(hits) {
			d := docs[i%len(docs)]
			p.filter.Match(d)
			hits = append(hits, hit{key: string(rune('a' + i%26)), doc: d})
		}
		if page := p.page(hits); len(page) > p.limit {
			t.Fatalf("%s: a page of %d hits past its limit %d", what, len(page), p.limit)
		}
	}
	f.Fuzz(func(t *testing.T, payload string) {
		if _, p, err := parseUsersQuery(payload); err != nil {
			sdkError(t, "parseUsersQuery", err, apierror.CodeInput, apierror.CodePayloadTooBig)
		} else {
			checkParsed(t, "users query", p, MaxUsersLimit)
		}
		if typ, id, p, err := parseMembersQuery(payload); err != nil {
			sdkError(t, "parseMembersQuery", err, apierror.CodeInput, apierror.CodePayloadTooBig)
		} else {
			if checkChannelPath(typ, id) != nil {
				t.Fatalf("members query of channel %q:%q accepted", typ, id)
			}
			checkParsed(t, "members query", p, MaxMemberLimit)
		}

		var q channelsQuery
		if err := decodeBody([]byte(payload), &q); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
			return
		}
		p, memberLimit, err := parseChannelsQuery(q)
		if err != nil {
			sdkError(t, "parseChannelsQuery", err, apierror.CodeInput)
			return
		}
		checkParsed(t, "channels query", p, MaxChannelsLimit)
		if memberLimit < 1 || memberLimit > MaxMemberLimit {
			t.Fatalf("channels query accepted with member limit %d", memberLimit)
		}
	})
}

// FuzzChannelTypeBody: a body of POST or PUT /channeltypes. A name is
// accepted only if it is a valid channel type; the fields applied to a type
// leave max_message_length non-negative, set each flag the body gives as a
// boolean to that value, and the type still encodes.
func FuzzChannelTypeBody(f *testing.F) {
	for _, seed := range []string{
		`{"name": "support", "connect_events": false, "typing_events": true, "max_message_length": 5000, "automod": "simple"}`,
		`{"name": "a:b"}`,
		`{"name": 5}`,
		`{"name": ""}`,
		`{"connect_events": "no"}`,
		`{"connect_events": null, "max_message_length": null}`,
		`{"max_message_length": -1}`,
		`{"max_message_length": 1.5}`,
		`{"max_message_length": 9223372036854775808}`,
		`{"replies": true, "reactions": true, "search": true, "mutes": true, "read_events": true}`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	flags := func(ct model.ChannelType) map[string]bool {
		return map[string]bool{
			"connect_events": ct.ConnectEvents, "typing_events": ct.TypingEvents, "read_events": ct.ReadEvents,
			"replies": ct.Replies, "reactions": ct.Reactions, "search": ct.Search, "mutes": ct.Mutes,
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m map[string]json.RawMessage
		if err := decodeBody(body, &m); err != nil {
			sdkError(t, "decode", err, apierror.CodeInput, apierror.CodePayloadTooBig)
			return
		}
		if name, err := channelTypeName(m); err != nil {
			sdkError(t, "channelTypeName", err, apierror.CodeInput)
		} else if err := subject.CheckChannelType(name); err != nil {
			t.Fatalf("channel type %q accepted: %v", name, err)
		}
		ct := model.DefaultChannelTypes(time.Unix(1, 0))[0]
		if err := applyChannelTypeFields(&ct, m); err != nil {
			sdkError(t, "applyChannelTypeFields", err, apierror.CodeInput)
			return
		}
		if ct.MaxMessageLen < 0 {
			t.Fatalf("max_message_length %d accepted", ct.MaxMessageLen)
		}
		for k, v := range flags(ct) {
			var want bool
			if raw, given := m[k]; given && json.Unmarshal(raw, &want) == nil && string(bytes.TrimSpace(raw)) != "null" && v != want {
				t.Fatalf("%s is %s in the body, %v in the type", k, raw, v)
			}
		}
		if _, err := json.Marshal(ct); err != nil {
			t.Fatalf("channel type %+v does not encode: %v", ct, err)
		}
	})
}

// FuzzQueryIndex: a filter and a sort, as a users or a channels query of any
// caller, answered by the index through each of the planner's plans on the
// data of TestIndexAnswersLikeAFullScan, give the page a scan of every
// record gives. The index reads its conditions from the filter on its own
// (conjuncts); where it reads one the filter does not hold, or misses one it
// does, it picks the wrong candidates and the pages differ.
func FuzzQueryIndex(f *testing.F) {
	m := newMemIndex(f)
	r := rand.New(rand.NewPCG(4, 2))
	users, cids := randomData(m, r, 150, 50)
	for i := range 30 {
		fl, s := randomUserQuery(r, users)
		if i%2 == 1 {
			fl, s = randomChannelQuery(r, users, cids)
		}
		f.Add(fl, s, i%2 == 1, uint8(r.IntN(256)), uint8(r.IntN(8)))
	}
	f.Add(`{"id": {"$in": ["u001", "u001", 5, null]}, "$and": [{"id": "u001"}]}`, ``, false, uint8(0), uint8(0))
	f.Add(`{"name": {"$autocomplete": "ANN"}, "$nor": [{"name": {"$autocomplete": "anna"}}]}`, `[{"field": "name"}]`, false, uint8(1), uint8(2))
	f.Add(`{"members": {"$contains": "u003"}, "cid": {"$in": ["team:c001", "messaging:c002"]}}`, `[{"field": "member_count"}]`, true, uint8(2), uint8(3))
	plans := []struct{ load, ref, collect int }{
		{loadCost, refCost, collectCap}, {1 << 10, 1 << 20, collectCap}, {40, 0, collectCap},
		{0, 1 << 20, collectCap}, {1 << 10, 0, 0}, {1, 4, 3},
	}
	defer func(l, rc, c int) { loadCost, refCost, collectCap = l, rc, c }(loadCost, refCost, collectCap)
	f.Fuzz(func(t *testing.T, filterJSON, sortJSON string, channels bool, who, page uint8) {
		op, def, maxLimit, tbl := "QueryUsers", DefaultUsersLimit, MaxUsersLimit, usersTable
		if channels {
			op, def, maxLimit, tbl = "QueryChannels", DefaultChannelsLimit, MaxChannelsLimit, channelsTable
		}
		limit, offset := 1+int(page%8)*4, []int{0, 0, 1, 5, 40}[int(page/8)%5]
		q := query{Filter: json.RawMessage(filterJSON), Sort: json.RawMessage(sortJSON), Limit: &limit, Offset: &offset}
		p, err := q.parse(op, def, maxLimit)
		if err != nil {
			sdkError(t, op, err, apierror.CodeInput)
			return
		}
		if len(p.sort) == 0 {
			p.sort = defaultUserSort
			if channels {
				p.sort = defaultChannelSort
			}
		}
		cl := caller{server: true}
		if who%4 != 0 {
			cl = caller{user: users[int(who)%len(users)]}
		}
		for _, plan := range plans {
			loadCost, refCost, collectCap = plan.load, plan.ref, plan.collect
			_ = m.view(func(tx *bolt.Tx) error {
				load, scope := userLoader(tx, p, cl), []eqTerm(nil)
				if channels {
					load, scope = channelLoader(tx, p, cl, openTypes, nil), readScope(cl, openTypes)
				}
				got := hitKeys(p.find(tx, tbl, scope, load))
				if want := scanAll(tx, tbl, p, load); !slices.Equal(got, want) {
					t.Fatalf("%s filter %s sort %s limit %d offset %d as %+v, plan %+v:\n got %v\nwant %v", op, filterJSON, sortJSON, limit, offset, cl, plan, got, want)
				}
				return nil
			})
		}
	})
}
