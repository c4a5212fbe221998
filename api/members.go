package api

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
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
	now := s.now()
	var changed []model.Member
	ch, rev, _, err := store.Update(ctx, s.st.Channels, store.ChannelKey(typ, id), func(ch *model.Channel, exists bool) error {
		changed = nil
		if !exists {
			return apierror.NotFound("channel %s:%s does not exist", typ, id)
		}
		i := ch.MemberIndex(user)
		if i < 0 {
			return apierror.NotFound("user %s is not a member of channel %s", user, ch.CID())
		}
		upd, err := body.apply(ch.Members[i], cl, now)
		if err != nil {
			return err
		}
		if upd.Same(ch.Members[i]) {
			return store.ErrUnchanged
		}
		ch.Members[i] = upd
		changed = []model.Member{upd}
		return checkChannelSize(*ch)
	})
	if err != nil {
		return err
	}
	s.publishChannelChange(ctx, cl, channelChange{ch: ch, rev: rev, changed: changed})
	m, err := s.memberState(ctx, cl, ch, user)
	if err != nil {
		return err
	}
	return reply(c, map[string]any{"channel_member": m})
}

// memberState renders ch's member user, with the user's presence as the
// caller may see it.
func (s *Server) memberState(ctx context.Context, cl caller, ch model.Channel, user string) (map[string]any, error) {
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence); err != nil {
		return nil, err
	}
	view := map[string]any{"id": user, "online": false, "banned": false}
	err := s.idx.view(func(tx *bolt.Tx) error {
		if u, ok := readUser(tx, user); ok {
			view = userView(u, readPresence(tx, user), cl.viewerOf(user))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return memberJSON(ch.Members[ch.MemberIndex(user)], view, ch), nil
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
// never finds them).
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
	if !canRead(cl, ch, ct.OpenReads) {
		return apierror.NotAllowed("user %s may not read channel %s: not a member", cl.user, ch.CID())
	}
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence); err != nil {
		return err
	}
	var hits []hit
	members := map[string]map[string]any{}
	err = s.idx.view(func(tx *bolt.Tx) error {
		for _, m := range ch.Members {
			user := map[string]any{"id": m.UserID, "online": false, "banned": false}
			if u, ok := readUser(tx, m.UserID); ok {
				user = userView(u, readPresence(tx, m.UserID), cl.viewerOf(m.UserID))
			}
			doc := memberDoc(m, user, ch)
			if p.filter.Match(doc) {
				hits = append(hits, hit{key: m.UserID, doc: doc})
				members[m.UserID] = memberJSON(m, user, ch)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, p.limit)
	for _, h := range p.page(hits) {
		out = append(out, members[h.key])
	}
	return reply(c, map[string]any{"members": out})
}

// memberDoc is what a member filter and sort read of m: its own fields and
// custom fields, and its user's (id, name, online, last_active at the top
// level, every field as "user.<field>").
func memberDoc(m model.Member, user map[string]any, ch model.Channel) filter.Map {
	doc := filter.Map{}
	for k, v := range user {
		doc["user."+k] = v
	}
	for _, k := range []string{"id", "name", "online", "last_active"} {
		if v, ok := user[k]; ok {
			doc[k] = v
		}
	}
	maps.Copy(doc, m.Custom)
	maps.Copy(doc, filter.Map{
		"user_id": m.UserID, "channel_role": m.ChannelRole, "is_moderator": m.ChannelRole == roleModerator,
		"created_at": m.CreatedAt, "updated_at": m.UpdatedAt, "banned": false, "cid": ch.CID(),
	})
	return doc
}
