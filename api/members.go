package api

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// memberPatch is the body of PATCH /channels/{type}/{id}/member: set and
// unset a member's custom fields (by name or dotted path, as fieldPatch),
// its role (server-side only), and whether the member has archived or
// pinned the channel.
type memberPatch struct {
	fieldPatch
}

// errRoleServerSide is what a client changing its own channel role is told,
// in Stream's words.
var errRoleServerSide = apierror.NotAllowed("this channel role can only be updated server side")

// apply returns m as the patch changes it at now; m is untouched.
func (p memberPatch) apply(m model.Member, cl caller, now time.Time) (model.Member, error) {
	out := m
	for _, k := range p.Unset {
		switch k {
		case "channel_role":
			if !cl.server {
				return m, errRoleServerSide
			}
			out.ChannelRole = roleMember
		case "archived":
			out.ArchivedAt = time.Time{}
		case "pinned":
			out.PinnedAt = time.Time{}
		}
	}
	for k, v := range p.Set {
		switch k {
		case "channel_role":
			if !cl.server {
				return m, errRoleServerSide
			}
			role, _ := v.(string)
			if role != roleMember && role != roleModerator {
				return m, apierror.Input("channel_role must be %s or %s", roleMember, roleModerator)
			}
			out.ChannelRole = role
		case "archived", "pinned":
			on, ok := v.(bool)
			if !ok {
				return m, apierror.Input("%s must be true or false", k)
			}
			at := &out.ArchivedAt
			if k == "pinned" {
				at = &out.PinnedAt
			}
			switch {
			case !on:
				*at = time.Time{}
			case at.IsZero():
				*at = now
			}
		}
	}
	custom, err := p.fieldPatch.apply(m.Custom, memberPatchReserved)
	if err != nil {
		return m, err
	}
	if out.Custom, err = memberCustom(custom); err != nil {
		return m, err
	}
	if !out.Same(m) {
		out.UpdatedAt = now
	}
	return out, nil
}

// memberPatchReserved are the names a member patch never treats as custom:
// the member's own fields, and archived and pinned.
var memberPatchReserved = func() map[string]bool {
	r := map[string]bool{"archived": true, "pinned": true}
	for k := range model.MemberReserved {
		r[k] = true
	}
	return r
}()

// updateMemberPartial is PATCH /channels/{type}/{id}/member (the SDK's
// updateMemberPartial; server-side with ?user_id=) and PATCH
// /channels/{type}/{id}/member/{user_id} (its older partialUpdateMember,
// used by archive and pin). A client updates its own member only.
func (s *Server) updateMemberPartial(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	typ, id := param(c, "type"), param(c, "id")
	if err := checkChannelPath(typ, id); err != nil {
		return err
	}
	user := param(c, "user_id")
	if user == "" {
		user = c.QueryParam("user_id")
	}
	switch {
	case user == "" && cl.server:
		return apierror.Input("user_id is required with server-side auth")
	case user == "":
		user = cl.user
	case !cl.server && user != cl.user:
		return apierror.NotAllowed("user %s may update only its own channel member", cl.user)
	}
	if err := subject.CheckUserID(user); err != nil {
		return apierror.Input("user_id: %v", err)
	}
	var body memberPatch
	if err := decode(c, &body); err != nil {
		return err
	}
	if err := body.check(); err != nil {
		return err
	}
	ch, _, err := store.Get[model.Channel](ctx, s.st.Channels, store.ChannelKey(typ, id))
	if errors.Is(err, store.ErrNotFound) {
		return apierror.NotFound("channel %s:%s does not exist", typ, id)
	}
	if err != nil {
		return err
	}
	now := s.now()
	m, rev, wrote, err := store.Update(ctx, s.st.Members, store.MemberKey(typ, id, user), func(m *model.Member, exists bool) error {
		if !exists {
			return apierror.NotFound("user %s is not a member of channel %s", user, ch.CID())
		}
		upd, err := body.apply(*m, cl, now)
		if err != nil {
			return err
		}
		if upd.Same(*m) {
			return store.ErrUnchanged
		}
		*m = upd
		return nil
	})
	if err != nil {
		return err
	}
	m.UserID = user
	if wrote {
		s.publishChannelChange(ctx, cl, channelChange{ch: ch, changed: []memberChange{{m, rev}}})
	}
	view, err := s.userViewOf(ctx, cl, user)
	if err != nil {
		return err
	}
	return reply(c, map[string]any{"channel_member": memberJSON(m, view, ch)})
}

// userViewOf reads user as the caller may see it, presence included.
func (s *Server) userViewOf(ctx context.Context, cl caller, user string) (map[string]any, error) {
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence); err != nil {
		return nil, err
	}
	var view map[string]any
	err := s.idx.view(func(tx *bolt.Tx) error {
		view = viewOf(tx, user, cl.viewerOf(user))
		return nil
	})
	return view, err
}

// membersQuery is the payload of GET /members (the SDK's queryMembers): the
// channel by type and id, or by type and its member list (a distinct
// channel); a filter, a sort and a page, by offset or by cursor.
type membersQuery struct {
	query
	Type    string `json:"type"`
	ID      string `json:"id"`
	Members any    `json:"members"`
	// Cursors: members past a user id or a joining time, in the sort's
	// direction; each is a condition added to the filter.
	UserIDGt               string `json:"user_id_gt"`
	UserIDGte              string `json:"user_id_gte"`
	UserIDLt               string `json:"user_id_lt"`
	UserIDLte              string `json:"user_id_lte"`
	CreatedAtAfter         string `json:"created_at_after"`
	CreatedAtAfterOrEqual  string `json:"created_at_after_or_equal"`
	CreatedAtBefore        string `json:"created_at_before"`
	CreatedAtBeforeOrEqual string `json:"created_at_before_or_equal"`
}

// defaultMemberSort is Stream's: members in the order they joined (ties by
// user id, as always).
var defaultMemberSort = filter.Sort{{Field: "created_at", Direction: 1}}

// cursorFilter is q's filter with its cursors as conditions.
func (q membersQuery) cursorFilter() (json.RawMessage, error) {
	conds := []any{}
	if len(q.Filter) > 0 && string(q.Filter) != "null" {
		conds = append(conds, q.Filter)
	}
	for _, c := range []struct{ field, op, v string }{
		{"user_id", "$gt", q.UserIDGt}, {"user_id", "$gte", q.UserIDGte},
		{"user_id", "$lt", q.UserIDLt}, {"user_id", "$lte", q.UserIDLte},
		{"created_at", "$gt", q.CreatedAtAfter}, {"created_at", "$gte", q.CreatedAtAfterOrEqual},
		{"created_at", "$lt", q.CreatedAtBefore}, {"created_at", "$lte", q.CreatedAtBeforeOrEqual},
	} {
		if c.v != "" {
			conds = append(conds, map[string]any{c.field: map[string]string{c.op: c.v}})
		}
	}
	switch len(conds) {
	case 0:
		return nil, nil
	case 1:
		if raw, ok := conds[0].(json.RawMessage); ok {
			return raw, nil
		}
	}
	return json.Marshal(map[string]any{"$and": conds})
}

// parseMembersQuery reads and checks the payload query parameter of GET
// /members: the channel it names (type and id, or type and the id of the
// distinct channel of its members) and the query.
func parseMembersQuery(raw string) (typ, id string, p parsed, err error) {
	const op = "QueryMembers"
	if len(raw) > MaxBodyBytes {
		return "", "", p, apierror.New(apierror.CodePayloadTooBig, http.StatusRequestEntityTooLarge, "payload is larger than %d bytes", MaxBodyBytes)
	}
	var q membersQuery
	if err := json.Unmarshal([]byte(raw), &q); err != nil {
		return "", "", p, opError(op, "invalid payload: %s", jsonError(err))
	}
	typ, id = q.Type, q.ID
	if id == "" && q.Members != nil {
		ms, err := parseMembers(q.Members, caller{server: true}) // only their ids count here
		if err != nil {
			return "", "", p, err
		}
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.UserID
		}
		id = distinctID(ids)
	}
	if typ == "" || id == "" {
		return "", "", p, opError(op, "type and either id or members are required")
	}
	if err := checkChannelPath(typ, id); err != nil {
		return "", "", p, err
	}
	if q.Filter, err = q.cursorFilter(); err != nil {
		return "", "", p, opError(op, "invalid payload: %v", err)
	}
	if p, err = q.parse(op, DefaultMemberLimit, MaxMemberLimit); err != nil {
		return "", "", p, err
	}
	if len(p.sort) == 0 {
		p.sort = defaultMemberSort
	}
	return typ, id, p, nil
}

// queryMembers is GET /members?payload=...: a channel's members that match
// a filter, sorted and paged, each with its user and live presence as the
// caller may see them (an invisible member is offline, and {online: true}
// never finds them). The index answers it (findMembers) without reading
// every member of a big channel.
func (s *Server) queryMembers(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	typ, id, p, err := parseMembersQuery(c.QueryParam("payload"))
	if err != nil {
		return err
	}
	ct, err := s.channelType(ctx, typ)
	if err != nil {
		return err
	}
	ch, _, err := store.Get[model.Channel](ctx, s.st.Channels, store.ChannelKey(typ, id))
	if errors.Is(err, store.ErrNotFound) {
		return apierror.NotFound("channel %s:%s does not exist", typ, id)
	}
	if err != nil {
		return err
	}
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence, store.BucketMembers); err != nil {
		return err
	}
	cid := ch.CID()
	var out []map[string]any
	allowed, reads := true, 0
	err = s.idx.view(func(tx *bolt.Tx) error {
		if allowed = canRead(cl, ch, !cl.server && newMemberReader(tx).has(cid, cl.user), ct.OpenReads); !allowed {
			return nil
		}
		members := map[string]loadedMember{}
		load := memberLoader(tx, p, cl, cid, members)
		hits := p.findMembers(tx, cid, func(user string) (filter.Map, bool) {
			reads++
			return load(user)
		})
		out = make([]map[string]any, 0, len(hits))
		for _, h := range hits {
			lm := members[h.key]
			out = append(out, memberJSON(lm.m, lm.user, ch))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !allowed {
		return apierror.NotAllowed("user %s may not read channel %s: not a member", cl.user, cid)
	}
	s.chargeReads(c, reads)
	return reply(c, map[string]any{"members": out})
}

// loadedMember is a member and its user as the caller sees it.
type loadedMember struct {
	m    model.Member
	user map[string]any
}

// memberLoader is queryMembers' loader: user's member of cid, as the
// caller sees it, if it matches p's filter (kept in loaded).
func memberLoader(tx *bolt.Tx, p parsed, cl caller, cid string, loaded map[string]loadedMember) func(user string) (filter.Map, bool) {
	mr := newMemberReader(tx)
	return func(user string) (filter.Map, bool) {
		m, ok := mr.get(cid, user)
		if !ok {
			return nil, false
		}
		view := viewOf(tx, user, cl.viewerOf(user))
		doc := memberDoc(m, view, cid)
		if !p.filter.Match(doc) {
			return nil, false
		}
		if loaded != nil {
			loaded[user] = loadedMember{m, view}
		}
		return doc, true
	}
}

// memberDoc is what a member filter and sort read of m, a member of cid:
// its custom fields, its user's (id, name, online, last_active at the top
// level, every field as "user.<field>") and its own fields. Custom fields
// never stand for the user's, even where the user lacks the field: a member
// may not make itself read online, nor the users table's indexes miss it.
func memberDoc(m model.Member, user map[string]any, cid string) filter.Map {
	doc := filter.Map{}
	for k, v := range m.Custom {
		if !memberUserKey(k) {
			doc[k] = v
		}
	}
	for k, v := range user {
		doc["user."+k] = v
	}
	for _, k := range []string{"id", "name", "online", "last_active"} {
		if v, ok := user[k]; ok {
			doc[k] = v
		}
	}
	maps.Copy(doc, filter.Map{
		"user_id": m.UserID, "channel_role": m.ChannelRole, "is_moderator": m.ChannelRole == roleModerator,
		"created_at": m.CreatedAt, "updated_at": m.UpdatedAt, "banned": false, "cid": cid,
	})
	return doc
}

// memberUserKey says a member document's key k holds a field of its user.
func memberUserKey(k string) bool {
	switch k {
	case "id", "name", "online", "last_active":
		return true
	}
	return strings.HasPrefix(k, "user.")
}
