package api

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// Channel events: what Stream sends a channel's watchers when its members or
// data change or it is deleted (member.added, member.removed,
// channel.updated, channel.deleted), published on the channel's subject only.
//
// Gateways deliver them through the same relay as presence events
// (event.StreamChannel): Meta.CIDs routes them to the connections watching
// the channel, and Meta.User is a dedup key naming what the event is about,
// with a KV revision at the change as its version:
//
//   - member events: "<cid>/<user>", versioned by the member key's revision
//     (a removal by the revision it replaced + 1, a lower bound of its
//     delete marker's) — each member's events are ordered on their own, so
//     concurrent changes of different members (on different api nodes)
//     never make a gateway drop one as stale;
//   - channel.updated, channel.deleted: "<cid>", versioned by the channel's
//     revision — the newest channel object
//     wins; channel.deleted carries the delete's revision's lower bound
//     (the revision it replaced + 1), so it beats every update before it and
//     loses to any write of a channel created again under the same cid.
//
// A key holds a ':', which no user id may, so it never matches a watched
// user; its stream differs from the presence and user streams, so it never
// meets their dedup keys either.
//
// Events go out after the memberships are written and before the api
// answers: by the time a watcher sees member.added, the new member's next
// presence transition is routed to the channel (the worker reads the
// memberships bucket on every transition, pkg/route), and after
// member.removed or channel.deleted no transition decided after the answer
// is routed there (one the worker was routing at that very moment may
// still arrive just after the event).
// Publishing is core NATS, at most once like every relayed event; a failed
// publish is logged and the request still succeeds, since the change is
// stored.

// memberKey is the dedup key of a member event (see above).
func memberKey(cid, user string) string { return cid + "/" + user }

// channelChange is what one call did to a channel.
type channelChange struct {
	ch      model.Channel // after the call
	rev     uint64        // the channel's revision, if the call wrote it
	added   []memberChange
	removed []memberChange // as they were
	changed []memberChange // members still there whose role or custom fields changed
	updated bool           // data changed (or was set): channel.updated
}

// eventViews renders, as other users see them, the users an event names and
// the channel object (as in the channel state, without the caller's own
// capabilities, so the SDK keeps the watcher's), with its member count.
type eventViews struct {
	users   map[string]map[string]any
	channel map[string]any
	count   int
}

// eventViews reads the views of a change's event; count, if not negative,
// is the channel's member count (a deleted channel's, which the index no
// longer has).
func (s *Server) eventViews(ctx context.Context, ch model.Channel, users []string, count int) (eventViews, error) {
	v := eventViews{users: map[string]map[string]any{}, count: count}
	ct, err := s.channelType(ctx, ch.Type)
	if err != nil {
		ct = model.ChannelType{Name: ch.Type}
	}
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence, store.BucketMembers); err != nil {
		return v, err
	}
	if ch.CreatedByID != "" {
		users = append(users, ch.CreatedByID)
	}
	err = s.idx.view(func(tx *bolt.Tx) error {
		for _, id := range users {
			if _, ok := v.users[id]; !ok {
				v.users[id] = viewOf(tx, id, model.Other)
			}
		}
		if v.count < 0 {
			v.count = newMemberReader(tx).count(ch.CID())
		}
		return nil
	})
	if err != nil {
		return v, err
	}
	var creator map[string]any
	if ch.CreatedByID != "" {
		creator = v.users[ch.CreatedByID]
	}
	v.channel = channelJSON(ch, ct, creator, v.count)
	delete(v.channel, "own_capabilities")
	return v, nil
}

// channelEvent is the envelope every channel event shares.
func channelEvent(typ string, ch model.Channel, at time.Time) map[string]any {
	return map[string]any{
		"type": typ, "cid": ch.CID(), "channel_type": ch.Type, "channel_id": ch.ID, "created_at": at,
	}
}

// publishChannelChange sends the events of one write to the channel's
// watchers: member.removed, member.added, member.updated, then
// channel.updated.
func (s *Server) publishChannelChange(ctx context.Context, cl caller, chg channelChange) {
	if len(chg.added) == 0 && len(chg.removed) == 0 && len(chg.changed) == 0 && !chg.updated {
		return
	}
	ch, cid := chg.ch, chg.ch.CID()
	ids := slices.Concat(changedIDs(chg.added), changedIDs(chg.removed), changedIDs(chg.changed))
	if !cl.server {
		ids = append(ids, cl.user)
	}
	v, err := s.eventViews(ctx, ch, ids, -1)
	if err != nil {
		s.log.Error("channel events not sent", "cid", cid, "err", err)
		return
	}
	now := s.now()
	publish := func(key string, version uint64, ev map[string]any) {
		b, err := json.Marshal(ev)
		if err == nil {
			err = event.PublishChannel(s.nc, event.Meta{User: key, Stream: event.StreamChannel, Version: version, CIDs: []string{cid}}, b)
		}
		if err != nil {
			s.log.Error("channel event not sent", "cid", cid, "type", ev["type"], "err", err)
		}
	}
	memberEvent := func(typ string, c memberChange) {
		ev := channelEvent(typ, ch, now)
		ev["member"] = memberJSON(c.m, v.users[c.m.UserID], ch)
		ev["user"] = v.users[c.m.UserID]
		ev["channel_member_count"] = v.count
		publish(memberKey(cid, c.m.UserID), c.rev, ev)
	}
	for _, m := range chg.removed {
		memberEvent(event.MemberRemoved, m)
	}
	for _, m := range chg.added {
		memberEvent(event.MemberAdded, m)
	}
	for _, m := range chg.changed {
		memberEvent(event.MemberUpdated, m)
	}
	if chg.updated {
		ev := channelEvent(event.ChannelUpdated, ch, now)
		ev["channel"] = v.channel
		if !cl.server {
			ev["user"] = v.users[cl.user]
		}
		publish(cid, chg.rev, ev)
	}
}

// publishChannelDeleted sends channel.deleted for ch, deleted at deletedAt by
// removing revision rev, with the count of members it had.
//
// Watches of the deleted channel are left to end by themselves: the api does
// not know which connections hold them (the gateways do), nothing is
// published on the channel once its memberships are gone, and the SDK forgets
// a channel on channel.deleted (so it does not watch it again after a
// reconnect) while its connection's watch lasts until stopWatching or
// disconnect. The api does not even drop the deleter's own watch: its
// removal could overtake the event in the gateway, and the deleting client
// needs channel.deleted too (the SDK cleans up on the event, not on the
// answer).
func (s *Server) publishChannelDeleted(ctx context.Context, cl caller, ch model.Channel, rev uint64, deletedAt time.Time, count int) {
	cid := ch.CID()
	var ids []string
	if !cl.server {
		ids = append(ids, cl.user)
	}
	v, err := s.eventViews(ctx, ch, ids, count)
	if err == nil {
		v.channel["deleted_at"] = deletedAt
		ev := channelEvent(event.ChannelDeleted, ch, deletedAt)
		ev["channel"] = v.channel
		if !cl.server {
			ev["user"] = v.users[cl.user]
		}
		var b []byte
		if b, err = json.Marshal(ev); err == nil {
			err = event.PublishChannel(s.nc, event.Meta{User: cid, Stream: event.StreamChannel, Version: rev + 1, CIDs: []string{cid}}, b)
		}
	}
	if err != nil {
		s.log.Error("channel.deleted not sent", "cid", cid, "err", err)
	}
}
