package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/watch"
)

// Limits on channels.
const (
	MaxMembersPerCall = 100 // members added in one call, as in Stream
	// MaxChannelMembers bounds a channel's members. Each is a key of its
	// own, so no message size bounds them; what does is the work done per
	// member: deleting a channel deletes each member and its membership,
	// a resync re-emits each member's presence, and a queryMembers that no
	// index answers (a sort by name) reads every member.
	MaxChannelMembers     = 10_000
	MaxChannelCustomBytes = 5 * 1024
	// MaxMemberCustomBytes bounds one member's custom fields.
	MaxMemberCustomBytes = 1024
	DefaultMemberLimit   = 100
	MaxMemberLimit       = 300
	// DistinctPrefix starts the id of a channel picked from its member set.
	DistinctPrefix = "!members-"
)

// Channel roles.
const (
	roleMember    = "channel_member"
	roleModerator = "channel_moderator"
)

// memberInput is one member a client asks to add: a user id, or
// {"user_id", "channel_role", custom fields...}. ChannelRole is "" and
// Custom nil when not given: re-adding a member changes only what is given.
type memberInput struct {
	UserID      string
	ChannelRole string
	Custom      map[string]any
}

// member is the new member m asks for, joining at now.
func (m memberInput) member(now time.Time) model.Member {
	role := m.ChannelRole
	if role == "" {
		role = roleMember
	}
	return model.Member{UserID: m.UserID, ChannelRole: role, CreatedAt: now, UpdatedAt: now, Custom: m.Custom}
}

// update applies m to an existing member: the role and the custom fields,
// each when given (custom fields are replaced whole).
func (m memberInput) update(old model.Member, now time.Time) model.Member {
	upd := old
	if m.ChannelRole != "" {
		upd.ChannelRole = m.ChannelRole
	}
	if m.Custom != nil {
		upd.Custom = m.Custom
	}
	if !upd.Same(old) {
		upd.UpdatedAt = now
	}
	return upd
}

func parseMembers(v any, cl caller) ([]memberInput, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, apierror.Input("members must be an array of user ids")
	}
	if len(list) > MaxMembersPerCall {
		return nil, apierror.Input("at most %d members may be added in one call", MaxMembersPerCall)
	}
	var out []memberInput
	seen := map[string]bool{}
	for _, e := range list {
		var m memberInput
		switch x := e.(type) {
		case string:
			m.UserID = x
		case map[string]any:
			m.UserID, _ = x["user_id"].(string)
			m.ChannelRole, _ = x["channel_role"].(string)
			var err error
			if m.Custom, err = memberCustom(x); err != nil {
				return nil, err
			}
		default:
			return nil, apierror.Input("members must be an array of user ids")
		}
		if err := subject.CheckUserID(m.UserID); err != nil {
			return nil, apierror.Input("member: %v", err)
		}
		switch m.ChannelRole {
		case "", roleMember:
		case roleModerator:
			if !cl.server {
				return nil, apierror.NotAllowed("setting channel_role is allowed only with server-side auth")
			}
		default:
			return nil, apierror.Input("channel_role must be %s or %s", roleMember, roleModerator)
		}
		if !seen[m.UserID] {
			seen[m.UserID] = true
			out = append(out, m)
		}
	}
	return out, nil
}

func parseIDs(v []string, what string) error {
	if len(v) > MaxMembersPerCall {
		return apierror.Input("at most %d %s in one call", MaxMembersPerCall, what)
	}
	for _, id := range v {
		if err := subject.CheckUserID(id); err != nil {
			return apierror.Input("%s: %v", what, err)
		}
	}
	return nil
}

// channelData is a channel's "data": members, creator and custom fields.
type channelData struct {
	members   []memberInput
	createdBy string
	custom    map[string]any
}

func parseChannelData(data map[string]any, cl caller) (channelData, error) {
	var d channelData
	var err error
	if d.members, err = parseMembers(data["members"], cl); err != nil {
		return d, err
	}
	switch cb := data["created_by"].(type) {
	case map[string]any:
		d.createdBy, _ = cb["id"].(string)
	case string:
		d.createdBy = cb
	}
	if id, ok := data["created_by_id"].(string); ok && id != "" {
		d.createdBy = id
	}
	if d.createdBy != "" {
		if err := subject.CheckUserID(d.createdBy); err != nil {
			return d, apierror.Input("created_by: %v", err)
		}
	}
	d.custom, err = customFields(data)
	return d, err
}

// memberCustom keeps the fields of a member object that are not a member's
// own (nil when there are none).
func memberCustom(x map[string]any) (map[string]any, error) {
	custom := map[string]any{}
	for k, v := range x {
		if !model.MemberReserved[k] && k != "" {
			custom[k] = v
		}
	}
	if b, _ := json.Marshal(custom); len(b) > MaxMemberCustomBytes {
		return nil, apierror.Input("member custom data is larger than %d bytes", MaxMemberCustomBytes)
	}
	if len(custom) == 0 {
		return nil, nil
	}
	return custom, nil
}

// customFields keeps the fields of data that are not the channel's own.
func customFields(data map[string]any) (map[string]any, error) {
	custom := map[string]any{}
	for k, v := range data {
		if !model.ChannelReserved[k] && k != "" {
			custom[k] = v
		}
	}
	if b, _ := json.Marshal(custom); len(b) > MaxChannelCustomBytes {
		return nil, apierror.Input("channel custom data is larger than %d bytes", MaxChannelCustomBytes)
	}
	if len(custom) == 0 {
		return nil, nil
	}
	return custom, nil
}

// checkChannelPath validates the type and id of a channel URL.
func checkChannelPath(typ, id string) error {
	if err := subject.CheckChannelType(typ); err != nil {
		return apierror.Input("%v", err)
	}
	if err := subject.CheckChannelID(id); err != nil {
		return apierror.Input("%v", err)
	}
	return nil
}

// canRead says whether the caller may see (and watch) ch: server-side
// callers always, users if they are a member (member) or its creator, or if
// its type has open reads.
func canRead(cl caller, ch model.Channel, member, openReads bool) bool {
	return openReads || canUpdate(cl, ch, member)
}

// canUpdate says whether the caller may change ch's members and data.
// Client-side that is its members and its creator.
func canUpdate(cl caller, ch model.Channel, member bool) bool {
	return cl.server || member || ch.CreatedByID == cl.user
}

// channelQuery is the body of POST /channels/{type}/{id}/query.
type channelQuery struct {
	Data     map[string]any `json:"data"`
	State    bool           `json:"state"`
	Watch    bool           `json:"watch"`
	Presence bool           `json:"presence"`
	// CreatedByID and CreatedBy may also come beside data (the SDK's query
	// options).
	CreatedByID string `json:"created_by_id"`
	CreatedBy   *struct {
		ID string `json:"id"`
	} `json:"created_by"`
	Members *struct {
		Limit  *int `json:"limit"`
		Offset *int `json:"offset"`
	} `json:"members"`
}

func (q channelQuery) memberPage() (limit, offset int, err error) {
	limit = DefaultMemberLimit
	if q.Members == nil {
		return limit, 0, nil
	}
	if q.Members.Limit != nil && *q.Members.Limit != 0 {
		limit = *q.Members.Limit
	}
	if q.Members.Offset != nil {
		offset = *q.Members.Offset
	}
	if limit < 1 || limit > MaxMemberLimit || offset < 0 || offset > MaxChannelMembers {
		return 0, 0, apierror.Input("members.limit must be between 1 and %d and members.offset between 0 and %d", MaxMemberLimit, MaxChannelMembers)
	}
	return limit, offset, nil
}

// queryChannel is POST /channels/{type}/{id}/query: get or create, and watch.
func (s *Server) queryChannel(c echo.Context) error {
	var q channelQuery
	if err := decode(c, &q); err != nil {
		return err
	}
	return s.getOrCreate(c, param(c, "type"), param(c, "id"), q)
}

// queryDistinctChannel is POST /channels/{type}/query: a channel without an
// id, named after its member set so the same members always get the same one.
func (s *Server) queryDistinctChannel(c echo.Context) error {
	var q channelQuery
	if err := decode(c, &q); err != nil {
		return err
	}
	members, err := parseMembers(q.Data["members"], callerOf(c))
	if err != nil {
		return err
	}
	if len(members) == 0 {
		return apierror.Input("a channel without an id needs data.members")
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.UserID
	}
	return s.getOrCreate(c, param(c, "type"), distinctID(ids), q)
}

// distinctID is the id of the channel of exactly these members: a hash of
// the sorted set, short enough for a channel id.
func distinctID(members []string) string {
	ids := slices.Clone(members)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	return DistinctPrefix + hex.EncodeToString(sum[:16])
}

func (s *Server) getOrCreate(c echo.Context, typ, id string, q channelQuery) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	if err := checkChannelPath(typ, id); err != nil {
		return err
	}
	memberLimit, memberOffset, err := q.memberPage()
	if err != nil {
		return err
	}
	ct, err := s.channelType(ctx, typ)
	if err != nil {
		return err
	}
	data, err := parseChannelData(q.Data, cl)
	if err != nil {
		return err
	}
	if data.createdBy == "" {
		data.createdBy = q.CreatedByID
		if q.CreatedBy != nil && q.CreatedBy.ID != "" {
			data.createdBy = q.CreatedBy.ID
		}
		if data.createdBy != "" {
			if err := subject.CheckUserID(data.createdBy); err != nil {
				return apierror.Input("created_by: %v", err)
			}
		}
	}
	key := store.ChannelKey(typ, id)
	ch, _, err := store.Get[model.Channel](ctx, s.st.Channels, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		ch, err = s.createChannel(ctx, cl, typ, id, data)
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	member, err := s.isMember(ctx, cl, typ, id)
	if err != nil {
		return err
	}
	if !canRead(cl, ch, member, ct.OpenReads) {
		return apierror.NotAllowed("user %s may not read channel %s: not a member", cl.user, ch.CID())
	}
	if q.Watch || q.Presence {
		if err := s.watch(ctx, cl, watch.Request{CIDs: []string{ch.CID()}}); err != nil {
			return err
		}
	}
	states, err := s.channelStates(ctx, cl, []model.Channel{ch}, memberLimit, memberOffset)
	if err != nil {
		return err
	}
	return reply(c, states[0])
}

// createChannel creates a channel, unless another request just did (then it
// returns that one), and records its members' memberships.
//
// The members are written first, then the channel: a channel is seen only
// with its members, and two users creating their distinct channel at once
// both find themselves members of the one that won. So creations racing
// with different member lists leave the winner's data with both lists'
// members; and members left behind by a delete that died half way (the
// channel goes first) are members again of a channel created under the
// same id.
func (s *Server) createChannel(ctx context.Context, cl caller, typ, id string, data channelData) (model.Channel, error) {
	creator := data.createdBy
	if !cl.server {
		creator = cl.user
	}
	if creator == "" {
		return model.Channel{}, apierror.Input("either data.created_by or data.created_by_id must be provided when using server side auth")
	}
	if !cl.server && len(data.members) > 0 && !slices.ContainsFunc(data.members, func(m memberInput) bool { return m.UserID == cl.user }) {
		return model.Channel{}, apierror.NotAllowed("user %s may create only channels it is a member of", cl.user)
	}
	ids := []string{creator}
	for _, m := range data.members {
		ids = append(ids, m.UserID)
	}
	if err := s.usersExist(ctx, ids); err != nil {
		return model.Channel{}, err
	}
	now := s.now()
	err := parallel(ctx, data.members, func(ctx context.Context, m memberInput) error {
		_, _, _, err := store.Update(ctx, s.st.Members, store.MemberKey(typ, id, m.UserID), func(v *model.Member, exists bool) error {
			if exists {
				return store.ErrUnchanged
			}
			*v = m.member(now)
			return nil
		})
		return err
	})
	if err != nil {
		return model.Channel{}, err
	}
	ch, _, _, err := store.Update(ctx, s.st.Channels, store.ChannelKey(typ, id), func(ch *model.Channel, exists bool) error {
		if exists {
			return store.ErrUnchanged
		}
		*ch = model.Channel{Type: typ, ID: id, CreatedByID: creator, CreatedAt: now, UpdatedAt: now, Custom: data.custom}
		return nil
	})
	if err != nil {
		return ch, err
	}
	// Whether this call created the channel or lost the race, the members
	// it wrote are members now, and routed.
	if err := s.addMemberships(ctx, ch.CID(), memberIDsOf(data.members)); err != nil {
		return ch, err
	}
	return ch, nil
}

// usersExist fails with the ids that are not users.
func (s *Server) usersExist(ctx context.Context, ids []string) error {
	if err := s.idx.sync(ctx, store.BucketUsers); err != nil {
		return err
	}
	var missing []string
	err := s.idx.view(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if _, ok := readUser(tx, id); !ok && !slices.Contains(missing, id) {
				missing = append(missing, id)
			}
		}
		return nil
	})
	if err != nil {
		return err // the index is being rebuilt: retryable
	}
	if len(missing) > 0 {
		return apierror.Input("the following users don't exist: %s", strings.Join(missing, ", "))
	}
	return nil
}

// stopWatching is POST /channels/{type}/{id}/stop-watching.
func (s *Server) stopWatching(c echo.Context) error {
	typ, id := param(c, "type"), param(c, "id")
	if err := checkChannelPath(typ, id); err != nil {
		return err
	}
	if err := s.watch(c.Request().Context(), callerOf(c), watch.Request{CIDs: []string{typ + ":" + id}, Remove: true}); err != nil {
		return err
	}
	return reply(c, nil)
}

// channelUpdate is the body of POST /channels/{type}/{id}.
type channelUpdate struct {
	AddMembers       []any          `json:"add_members"`
	RemoveMembers    []string       `json:"remove_members"`
	AddModerators    []string       `json:"add_moderators"`
	DemoteModerators []string       `json:"demote_moderators"`
	AssignRoles      []roleChange   `json:"assign_roles"`
	Data             map[string]any `json:"data"`
}

// roleChange is one entry of assign_roles.
type roleChange struct {
	UserID      string `json:"user_id"`
	ChannelRole string `json:"channel_role"`
}

// parse checks the update before anything is read or written: the members
// to add, the role changes (add_moderators, demote_moderators and
// assign_roles, server-side only) and the custom fields that are to replace
// the channel's (nil when data is not given, or has none).
func (u channelUpdate) parse(cl caller) (add []memberInput, roles []roleChange, custom map[string]any, err error) {
	if u.AddMembers != nil {
		if add, err = parseMembers(u.AddMembers, cl); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := parseIDs(u.RemoveMembers, "remove_members"); err != nil {
		return nil, nil, nil, err
	}
	for _, l := range []struct {
		ids  []string
		role string
	}{{u.AddModerators, roleModerator}, {u.DemoteModerators, roleMember}} {
		if err := parseIDs(l.ids, "role changes"); err != nil {
			return nil, nil, nil, err
		}
		for _, id := range l.ids {
			roles = append(roles, roleChange{UserID: id, ChannelRole: l.role})
		}
	}
	for _, r := range u.AssignRoles {
		if err := subject.CheckUserID(r.UserID); err != nil {
			return nil, nil, nil, apierror.Input("assign_roles: %v", err)
		}
		if r.ChannelRole != roleMember && r.ChannelRole != roleModerator {
			return nil, nil, nil, apierror.Input("assign_roles: channel_role must be %s or %s", roleMember, roleModerator)
		}
		roles = append(roles, r)
	}
	if len(roles) > MaxMembersPerCall {
		return nil, nil, nil, apierror.Input("at most %d role changes in one call", MaxMembersPerCall)
	}
	if len(roles) > 0 {
		if err := serverOnly(cl, "changing channel roles"); err != nil {
			return nil, nil, nil, err
		}
	}
	if u.Data != nil {
		if custom, err = customFields(u.Data); err != nil {
			return nil, nil, nil, err
		}
	}
	return add, roles, custom, nil
}

// updateChannel is POST /channels/{type}/{id}: add, update or remove
// members, change their roles, or replace the custom data. Each member is
// written on its own key; what can be checked beforehand (access, the
// member limit, role changes only for members) is, so a refused call
// changes nothing.
func (s *Server) updateChannel(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	typ, id := param(c, "type"), param(c, "id")
	if err := checkChannelPath(typ, id); err != nil {
		return err
	}
	var body channelUpdate
	if err := decode(c, &body); err != nil {
		return err
	}
	add, roles, custom, err := body.parse(cl)
	if err != nil {
		return err
	}
	if len(add) > 0 {
		if err := s.usersExist(ctx, memberIDsOf(add)); err != nil {
			return err
		}
	}
	ch, err := s.channelToUpdate(ctx, cl, typ, id)
	if err != nil {
		return err
	}
	if err := s.checkMemberChange(ctx, ch.CID(), add, roles, body.RemoveMembers); err != nil {
		return err
	}
	chg := channelChange{ch: ch, updated: body.Data != nil}
	now := s.now()
	if chg.added, chg.removed, chg.changed, err = s.changeMembers(ctx, typ, id, add, roles, body.RemoveMembers, now); err != nil {
		return err
	}
	if body.Data != nil {
		chg.ch, chg.rev, _, err = store.Update(ctx, s.st.Channels, store.ChannelKey(typ, id), func(ch *model.Channel, exists bool) error {
			if !exists {
				return apierror.NotFound("channel %s:%s does not exist", typ, id)
			}
			ch.Custom = custom
			ch.UpdatedAt = now
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Memberships first, so presence routing has followed the change by the
	// time a watcher hears of it or the caller has its answer.
	if err := s.addMemberships(ctx, ch.CID(), changedIDs(chg.added)); err != nil {
		return err
	}
	if err := s.removeMemberships(ctx, ch.CID(), changedIDs(chg.removed)); err != nil {
		return err
	}
	s.publishChannelChange(ctx, cl, chg)
	states, err := s.channelStates(ctx, cl, []model.Channel{chg.ch}, DefaultMemberLimit, 0)
	if err != nil {
		return err
	}
	return reply(c, map[string]any{"channel": states[0]["channel"], "members": states[0]["members"]})
}

// channelToUpdate reads channel typ:id for a change by cl: 404 if it does
// not exist, 403 unless cl may update it.
func (s *Server) channelToUpdate(ctx context.Context, cl caller, typ, id string) (model.Channel, error) {
	ch, _, err := store.Get[model.Channel](ctx, s.st.Channels, store.ChannelKey(typ, id))
	if errors.Is(err, store.ErrNotFound) {
		return ch, apierror.NotFound("channel %s:%s does not exist", typ, id)
	}
	if err != nil {
		return ch, err
	}
	member, err := s.isMember(ctx, cl, typ, id)
	if err != nil {
		return ch, err
	}
	if !canUpdate(cl, ch, member) {
		return ch, apierror.NotAllowed("user %s may not update channel %s", cl.user, ch.CID())
	}
	return ch, nil
}

// partialUpdateChannel is PATCH /channels/{type}/{id}: set and unset custom
// fields, by name or by dotted path into nested objects (fieldPatch); the
// channel's own fields are not changed this way.
func (s *Server) partialUpdateChannel(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	typ, id := param(c, "type"), param(c, "id")
	if err := checkChannelPath(typ, id); err != nil {
		return err
	}
	var body fieldPatch
	if err := decode(c, &body); err != nil {
		return err
	}
	if err := body.check(); err != nil {
		return err
	}
	if _, err := s.channelToUpdate(ctx, cl, typ, id); err != nil {
		return err
	}
	now := s.now()
	ch, rev, _, err := store.Update(ctx, s.st.Channels, store.ChannelKey(typ, id), func(ch *model.Channel, exists bool) error {
		if !exists {
			return apierror.NotFound("channel %s:%s does not exist", typ, id)
		}
		custom, err := body.apply(ch.Custom, model.ChannelReserved)
		if err != nil {
			return err
		}
		if ch.Custom, err = customFields(custom); err != nil {
			return err
		}
		ch.UpdatedAt = now
		return nil
	})
	if err != nil {
		return err
	}
	s.publishChannelChange(ctx, cl, channelChange{ch: ch, rev: rev, updated: true})
	states, err := s.channelStates(ctx, cl, []model.Channel{ch}, DefaultMemberLimit, 0)
	if err != nil {
		return err
	}
	return reply(c, map[string]any{"channel": states[0]["channel"], "members": states[0]["members"]})
}

// deleteChannel is DELETE /channels/{type}/{id}. The channel goes first, so
// it is gone for everyone at once; then its members and their memberships.
func (s *Server) deleteChannel(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	typ, id := param(c, "type"), param(c, "id")
	if err := checkChannelPath(typ, id); err != nil {
		return err
	}
	key := store.ChannelKey(typ, id)
	for {
		ch, rev, err := store.Get[model.Channel](ctx, s.st.Channels, key)
		if errors.Is(err, store.ErrNotFound) {
			return apierror.NotFound("channel %s:%s does not exist", typ, id)
		}
		if err != nil {
			return err
		}
		if !cl.server && ch.CreatedByID != cl.user {
			return apierror.NotAllowed("user %s may not delete channel %s", cl.user, ch.CID())
		}
		err = s.st.Channels.Delete(ctx, key, jetstream.LastRevision(rev))
		if store.IsConflict(err) {
			continue // changed meanwhile: check again
		}
		if err != nil {
			return err
		}
		count, err := s.dropMembers(ctx, typ, id)
		if err != nil {
			return err
		}
		now := s.now()
		s.publishChannelDeleted(ctx, cl, ch, rev, now, count)
		ct, _ := s.channelType(ctx, typ)
		out := channelJSON(ch, ct, nil, count)
		out["deleted_at"] = now
		return reply(c, map[string]any{"channel": out})
	}
}

// channelsQuery is the body of POST /channels.
type channelsQuery struct {
	query
	State       bool `json:"state"`
	Watch       bool `json:"watch"`
	Presence    bool `json:"presence"`
	MemberLimit *int `json:"member_limit"`
}

// defaultChannelSort is Stream's: most recently updated first.
var defaultChannelSort = filter.Sort{{Field: "last_updated", Direction: -1}}

// parseChannelsQuery checks the body of POST /channels; the sort defaults to
// defaultChannelSort, the members shown of each channel to DefaultMemberLimit.
func parseChannelsQuery(q channelsQuery) (p parsed, memberLimit int, err error) {
	const op = "QueryChannels"
	if p, err = q.parse(op, DefaultChannelsLimit, MaxChannelsLimit); err != nil {
		return parsed{}, 0, err
	}
	if len(p.sort) == 0 {
		p.sort = defaultChannelSort
	}
	memberLimit = DefaultMemberLimit
	if q.MemberLimit != nil && *q.MemberLimit != 0 {
		memberLimit = *q.MemberLimit
	}
	if memberLimit < 1 || memberLimit > MaxMemberLimit {
		return parsed{}, 0, opError(op, "member_limit must be between 1 and %d", MaxMemberLimit)
	}
	return p, memberLimit, nil
}

// queryChannels is POST /channels: filter, sort and page the channels the
// caller may see, and with watch/presence watch them all on its connection.
func (s *Server) queryChannels(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	var q channelsQuery
	if err := decode(c, &q); err != nil {
		return err
	}
	p, memberLimit, err := parseChannelsQuery(q)
	if err != nil {
		return err
	}
	if err := s.idx.sync(ctx, store.BucketChannels, store.BucketMembers); err != nil {
		return err
	}
	var hits []hit
	chans := map[string]model.Channel{}
	err = s.idx.view(func(tx *bolt.Tx) error {
		open := s.router.OpenReadTypes()
		hits = p.find(tx, channelsTable, readScope(cl, open), channelLoader(tx, p, cl, open, chans))
		return nil
	})
	if err != nil {
		return err
	}
	list := make([]model.Channel, len(hits))
	cids := make([]string, len(hits))
	for i, h := range hits {
		list[i], cids[i] = chans[h.key], h.key
	}
	if (q.Watch || q.Presence) && len(cids) > 0 {
		if err := s.watch(ctx, cl, watch.Request{CIDs: cids}); err != nil {
			return err
		}
	}
	states, err := s.channelStates(ctx, cl, list, memberLimit, 0)
	if err != nil {
		return err
	}
	return reply(c, map[string]any{"channels": states})
}

// channelLoader is queryChannels' loader: a channel cl may read (open are
// the open-read types) that matches p's filter, with its member count and
// the members the filter asks about (all of them only when it needs them:
// a filter on members names them, a sort on members reads them all). chans,
// if not nil, collects the channels loaded.
func channelLoader(tx *bolt.Tx, p parsed, cl caller, open []string, chans map[string]model.Channel) loader {
	mr := newMemberReader(tx)
	names, only := p.filter.Members("members")
	only = only && !slices.ContainsFunc(p.sort, func(f filter.SortField) bool { return f.Field == "members" })
	return func(cid string, raw []byte) (filter.Map, bool) {
		var ch model.Channel
		if json.Unmarshal(raw, &ch) != nil || !canRead(cl, ch, !cl.server && mr.has(cid, cl.user), slices.Contains(open, ch.Type)) {
			return nil, false
		}
		members := []string{}
		if only {
			for _, u := range names {
				if mr.has(cid, u) && !slices.Contains(members, u) {
					members = append(members, u)
				}
			}
		} else {
			mr.users(cid, func(u string) bool { members = append(members, u); return true })
		}
		doc := channelDoc(ch, mr.count(cid), members)
		if !p.filter.Match(doc) {
			return nil, false
		}
		if chans != nil {
			chans[cid] = ch
		}
		return doc, true
	}
}

// cidKey turns "type:id" into the channel's key ("" if it is not a cid).
func cidKey(cid string) string {
	typ, id, ok := strings.Cut(cid, ":")
	if !ok || subject.CheckChannelType(typ) != nil || subject.CheckChannelID(id) != nil {
		return ""
	}
	return store.ChannelKey(typ, id)
}

// channelDoc is what channel filters and sorts see: the channel, its
// member_count and members (the ids a filter needs; channelLoader).
func channelDoc(ch model.Channel, memberCount int, members []string) filter.Map {
	m := filter.Map{}
	maps.Copy(m, ch.Custom)
	m["id"] = ch.ID
	m["type"] = ch.Type
	m["cid"] = ch.CID()
	m["created_at"] = ch.CreatedAt
	m["updated_at"] = ch.UpdatedAt
	// Stream's last_updated is last_message_at, falling back to created_at;
	// Presence channels carry no messages, so it is created_at.
	m["last_updated"] = ch.CreatedAt
	m["member_count"] = memberCount
	if members == nil {
		members = []string{}
	}
	m["members"] = members
	m["frozen"] = false
	m["disabled"] = false
	if ch.CreatedByID != "" {
		m["created_by_id"] = ch.CreatedByID
	}
	return m
}

// channelJSON is the "channel" object of a channel state.
func channelJSON(ch model.Channel, ct model.ChannelType, createdBy map[string]any, memberCount int) map[string]any {
	m := map[string]any{}
	maps.Copy(m, ch.Custom)
	m["id"] = ch.ID
	m["type"] = ch.Type
	m["cid"] = ch.CID()
	m["created_at"] = ch.CreatedAt
	m["updated_at"] = ch.UpdatedAt
	m["member_count"] = memberCount
	m["config"] = ct
	m["own_capabilities"] = []string{}
	m["frozen"] = false
	m["disabled"] = false
	if createdBy != nil {
		m["created_by"] = createdBy
	} else if ch.CreatedByID != "" {
		m["created_by"] = map[string]any{"id": ch.CreatedByID}
	}
	return m
}

// memberJSON is a member as the SDK reads it: its custom fields at the top
// level, beside its own.
func memberJSON(m model.Member, user map[string]any, ch model.Channel) map[string]any {
	role := "member"
	switch {
	case m.UserID == ch.CreatedByID:
		role = "owner"
	case m.ChannelRole == roleModerator:
		role = "moderator"
	}
	out := make(map[string]any, len(m.Custom)+10)
	maps.Copy(out, m.Custom)
	maps.Copy(out, map[string]any{
		"user_id": m.UserID, "user": user, "channel_role": m.ChannelRole, "role": role,
		"is_moderator": m.ChannelRole == roleModerator,
		"created_at":   m.CreatedAt, "updated_at": m.UpdatedAt, "banned": false, "shadow_banned": false,
	})
	if !m.ArchivedAt.IsZero() {
		out["archived_at"] = m.ArchivedAt
	}
	if !m.PinnedAt.IsZero() {
		out["pinned_at"] = m.PinnedAt
	}
	return out
}

// channelStates renders channels as the SDK's channel state (PROTOCOL.md §6),
// with each member's current presence as the caller may see it.
func (s *Server) channelStates(ctx context.Context, cl caller, chans []model.Channel, memberLimit, memberOffset int) ([]map[string]any, error) {
	out := make([]map[string]any, 0, len(chans))
	if len(chans) == 0 {
		return out, nil
	}
	types := map[string]model.ChannelType{}
	for _, ch := range chans {
		if _, ok := types[ch.Type]; !ok {
			ct, err := s.channelType(ctx, ch.Type)
			if err != nil {
				ct = model.ChannelType{Name: ch.Type} // type deleted since: show the channel anyway
			}
			types[ch.Type] = ct
		}
	}
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence, store.BucketMembers); err != nil {
		return nil, err
	}
	err := s.idx.view(func(tx *bolt.Tx) error {
		mr := newMemberReader(tx)
		// One view per user per answer: a user in many of the returned
		// channels is decoded once (the views are only read from here on).
		views := map[string]map[string]any{}
		userOf := func(id string) map[string]any {
			if v, ok := views[id]; ok {
				return v
			}
			v := viewOf(tx, id, cl.viewerOf(id))
			views[id] = v
			return v
		}
		for _, ch := range chans {
			cid := ch.CID()
			var creator map[string]any
			if ch.CreatedByID != "" {
				creator = userOf(ch.CreatedByID)
			}
			// The page only: a channel of 10,000 members is watched
			// without sending 10,000 members; queryMembers has the rest.
			page := mr.page(cid, memberOffset, memberLimit)
			members := make([]any, 0, len(page))
			for _, u := range page {
				if m, ok := mr.get(cid, u); ok {
					members = append(members, memberJSON(m, userOf(u), ch))
				}
			}
			st := map[string]any{
				"channel":         channelJSON(ch, types[ch.Type], creator, mr.count(cid)),
				"members":         members,
				"messages":        []any{},
				"pinned_messages": []any{},
				"read":            []any{},
				"watchers":        []any{},
				"watcher_count":   0,
			}
			if !cl.server {
				if m, ok := mr.get(cid, cl.user); ok {
					st["membership"] = memberJSON(m, userOf(cl.user), ch)
				}
			}
			out = append(out, st)
		}
		return nil
	})
	return out, err
}
