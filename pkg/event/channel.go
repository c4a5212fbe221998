package event

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/subject"
)

// Channel event types: Stream's events about a channel itself, sent to the
// connections watching it.
const (
	MemberAdded    = "member.added"
	MemberUpdated  = "member.updated"
	MemberRemoved  = "member.removed"
	ChannelUpdated = "channel.updated"
	ChannelDeleted = "channel.deleted"
)

// StreamChannel is the stream of channel events (members, data, deletion).
// Their Meta.User is not a user id but a key naming what the event is about
// (a cid, or a cid and a member; both hold a ':', which no user id does), so
// the relay's user lookup finds no watcher and its dedup key, being in
// another stream, never meets a user's. Meta.Version is the channel's KV
// revision at the change, Meta.CIDs the one channel it is published on.
const StreamChannel Stream = "channel"

// PublishChannel sends a channel event on the subject of each of m.CIDs only
// (not on a user subject: m.User is a key, not a user).
func PublishChannel(nc *nats.Conn, m Meta, payload []byte) error {
	h := nats.Header{}
	h.Set(HeaderUser, m.User)
	h.Set(HeaderStream, string(m.Stream))
	h.Set(HeaderVersion, strconv.FormatUint(m.Version, 10))
	for _, cid := range m.CIDs {
		typ, id, _ := strings.Cut(cid, ":")
		if err := nc.PublishMsg(&nats.Msg{Subject: subject.ChannelEvents(typ, id), Header: h, Data: payload}); err != nil {
			return err
		}
	}
	return nil
}
