package api

import (
	"context"
	"time"

	"github.com/labstack/echo/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
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
