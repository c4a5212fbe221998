// Package subject names every NATS subject Presence uses and validates every
// id before it becomes part of one (DESIGN.md I7).
//
// The subject tree:
//
//	presence.in.conn.<node>.<user>        connection opened/closed/active (JetStream, worker input)
//	presence.in.user.<user>               visibility changes from the api (JetStream, worker input)
//	presence.in.node.<node>               a gateway node started under a new epoch, or its lease lapsed (JetStream, worker input)
//	presence.grace.<node>.<user>          closes held for a grace period (JetStream, a stream of their own)
//	presence.events.user.<user>           user.presence.changed / user.updated for one user
//	presence.events.channel.<type>.<id>   the same events, for each channel the user is in
//	presence.gateway.<node>.watch         request: add or remove watches of one connection
//	presence.gateway.reannounce           broadcast: every gateway re-publishes its live connections
//	presence.gateway.<node>.alive         a gateway's heartbeat (its epoch), beside its lease renewals
//	presence.resync                       to one worker: publish again the current event of these users and channels' members
package subject

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidID is returned for an id that may not become part of a subject.
var ErrInvalidID = errors.New("invalid id")

// Limits on ids. Stream allows longer user ids, but ids this long are already
// unusual and every byte is repeated in every subject and KV key.
const (
	MaxUserIDLen      = 128
	MaxChannelIDLen   = 64
	MaxChannelTypeLen = 64
	MaxNodeLen        = 64
)

const (
	// InputAll is the stream of the worker's input, taken as it arrives.
	InputAll = "presence.in.>"
	connIn   = "presence.in.conn."
	userIn   = "presence.in.user."
	nodeIn   = "presence.in.node."
	// ConnEventsAll, UserCommandsAll and NodeEventsAll are the three kinds
	// of input, apart for NATS permissions (pkg/natsauth).
	ConnEventsAll   = connIn + ">"
	UserCommandsAll = userIn + ">"
	NodeEventsAll   = nodeIn + ">"
	// GraceAll is the stream of closes held for a grace period. Held closes
	// live apart from the input, so that neither of the workers' consumers
	// needs a subject filter: a filtered consumer makes the server match
	// subjects for every message it hands out, which cost a third of a
	// worker's CPU.
	GraceAll = graceIn + ">"
	graceIn  = "presence.grace."

	// EventsAll matches every outgoing presence event.
	EventsAll     = "presence.events.>"
	userEvents    = "presence.events.user."
	channelEvents = "presence.events.channel."
	// ChannelEventsAll matches every channel's events.
	ChannelEventsAll = channelEvents + ">"
)

func validChar(c byte, extra string) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		return true
	}
	for i := 0; i < len(extra); i++ {
		if c == extra[i] {
			return true
		}
	}
	return false
}

func check(kind, id string, max int, extra string) error {
	if id == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidID, kind)
	}
	if len(id) > max {
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalidID, kind, max)
	}
	for i := 0; i < len(id); i++ {
		if !validChar(id[i], extra) {
			return fmt.Errorf("%w: %s %q may contain only letters, digits and %q", ErrInvalidID, kind, id, "_-"+extra)
		}
	}
	return nil
}

// CheckUserID validates a user id: letters, digits, '_', '-', '@' and '!'.
func CheckUserID(id string) error { return check("user id", id, MaxUserIDLen, "@!") }

// CheckChannelType validates a channel type name: letters, digits, '_', '-'.
func CheckChannelType(t string) error { return check("channel type", t, MaxChannelTypeLen, "") }

// CheckChannelID validates a channel id: letters, digits, '_', '-', '!', '@'.
func CheckChannelID(id string) error { return check("channel id", id, MaxChannelIDLen, "!@") }

// CheckNode validates a gateway node name: letters, digits, '_', '-'.
func CheckNode(n string) error { return check("node name", n, MaxNodeLen, "") }

// ConnEvent is the subject of a connection event of user on node.
func ConnEvent(node, user string) string { return connIn + node + "." + user }

// GraceClose is the subject of a connection close held for a grace period.
func GraceClose(node, user string) string { return graceIn + node + "." + user }

// IsGraceClose says whether subj is a held close's.
func IsGraceClose(subj string) bool { return strings.HasPrefix(subj, graceIn) }

// ConnEventsOfNode matches every connection event of one node.
func ConnEventsOfNode(node string) string { return connIn + node + ".>" }

// UserCommand is the subject of a visibility change of user.
func UserCommand(user string) string { return userIn + user }

// NodeEvent is the subject of a node's lifecycle events (started, expired).
func NodeEvent(node string) string { return nodeIn + node }

// UserEvents is the subject of events about one user.
func UserEvents(user string) string { return userEvents + user }

// ParseCID splits a channel's "type:id" and checks both parts.
func ParseCID(cid string) (channelType, channelID string, err error) {
	channelType, channelID, ok := strings.Cut(cid, ":")
	if !ok {
		return "", "", fmt.Errorf("%w: channel cid %q is not type:id", ErrInvalidID, cid)
	}
	if err := CheckChannelType(channelType); err != nil {
		return "", "", err
	}
	if err := CheckChannelID(channelID); err != nil {
		return "", "", err
	}
	return channelType, channelID, nil
}

// ChannelEvents is the subject of events about the members of one channel.
func ChannelEvents(channelType, channelID string) string {
	return channelEvents + channelType + "." + channelID
}

// ParseEvents tells what an events subject is about: a user, or a channel
// ("type:id").
func ParseEvents(subj string) (user, cid string, ok bool) {
	if rest, found := strings.CutPrefix(subj, userEvents); found {
		return rest, "", rest != ""
	}
	if rest, found := strings.CutPrefix(subj, channelEvents); found {
		typ, id, found := strings.Cut(rest, ".")
		// A type with a ':' would read back as another cid ("type:id" is
		// cut at its first ':'); no valid type has one.
		return "", typ + ":" + id, found && typ != "" && id != "" && !strings.Contains(typ, ":")
	}
	return "", "", false
}

// Reannounce asks every gateway to publish its live connections again (the
// presence state was lost).
const Reannounce = "presence.gateway.reannounce"

// Resync asks one worker (a queue group) to publish the current event of
// some users again: events are core NATS messages, and those in flight when
// a NATS server dies are lost.
const Resync = "presence.resync"

// GatewayAlive is a gateway node's heartbeat: core NATS, so a JetStream
// too loaded to store lease renewals in time cannot make a live node look
// dead. GatewayAliveAll matches every node's.
func GatewayAlive(node string) string { return "presence.gateway." + node + ".alive" }

// GatewayAliveAll matches every gateway's heartbeat.
const GatewayAliveAll = "presence.gateway.*.alive"

// ParseGatewayAlive returns the node of a heartbeat subject.
func ParseGatewayAlive(subj string) (node string, ok bool) {
	rest, ok := strings.CutPrefix(subj, "presence.gateway.")
	if !ok {
		return "", false
	}
	node, ok = strings.CutSuffix(rest, ".alive")
	return node, ok && CheckNode(node) == nil
}

// GatewayWatch is the request subject of a gateway node's watch registry.
func GatewayWatch(node string) string { return "presence.gateway." + node + ".watch" }

// GatewayWatchAll matches every gateway's watch requests.
const GatewayWatchAll = "presence.gateway.*.watch"

// QueryPrefix starts the subjects of the presence queries other services
// ask (presence.query.users, presence.query.channel; docs/nats.md);
// QueryAll matches them all.
const (
	QueryPrefix = "presence.query"
	QueryAll    = QueryPrefix + ".>"
)

// ServiceAll matches the NATS micro services' discovery subjects ($SRV.PING,
// $SRV.INFO, $SRV.STATS), which `nats micro ls/info/stats` use.
const ServiceAll = "$SRV.>"
