// Package event holds the events clients receive (in the SDK's shape) and
// how presence events travel on NATS between workers, api nodes and gateways.
//
// An outgoing event is published once on the user's subject and once on the
// subject of each presence-enabled channel of the user, with the same payload:
// the exact JSON an SDK client receives. Headers carry what gateways need to
// deliver it once per watching connection (I2): the user and a per-user
// version. Each copy is the same size whatever the number of channels, so a
// transition costs traffic linear in the user's channels.
package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/subject"
)

// Event types Presence sends.
const (
	ConnectionOK    = "connection.ok"
	HealthCheck     = "health.check"
	PresenceChanged = "user.presence.changed"
	UserUpdated     = "user.updated"
)

// Event is an event as the SDK reads it.
type Event struct {
	Type         string         `json:"type"`
	ConnectionID string         `json:"connection_id,omitempty"`
	CID          string         `json:"cid,omitempty"`
	ChannelType  string         `json:"channel_type,omitempty"`
	ChannelID    string         `json:"channel_id,omitempty"`
	Me           map[string]any `json:"me,omitempty"`
	User         map[string]any `json:"user,omitempty"`
	CreatedAt    time.Time      `json:"created_at"`
}

// Encode returns the JSON an SDK receives.
func (e Event) Encode() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		// Only custom fields can fail, and they came from JSON.
		panic("event: encode: " + err.Error())
	}
	return b
}

// Stream of a relayed event: a user's events (presence changes and profile
// updates, one sequence) or a channel's.
type Stream string

const (
	StreamPresence Stream = "presence"
)

// Headers of a relayed event.
const (
	HeaderUser    = "Presence-User"
	HeaderStream  = "Presence-Stream"
	HeaderVersion = "Presence-Version"
	HeaderPrev    = "Presence-Prev-Version"
	HeaderAt      = "Presence-At"
)

// Meta is what a gateway needs to route and deduplicate a relayed event.
type Meta struct {
	User    string
	Stream  Stream
	Version uint64
	// CIDs are the channels ("type:id") to publish the event on, besides the
	// user's own subject.
	CIDs []string
	// Prev is the version of the user's previous event when that event is
	// so recent it may still be on its way from another worker; gateways
	// hold this event back briefly until Prev is delivered (I2).
	Prev uint64
	// At is when the connect or close behind a presence transition happened,
	// as its gateway saw it (zero: not a transition): gateways measure their
	// connect→relay latency from it.
	At time.Time
}

// Publish sends payload on the user's subject and on each channel's subject.
func Publish(nc *nats.Conn, m Meta, payload []byte) error {
	h := nats.Header{}
	h.Set(HeaderUser, m.User)
	h.Set(HeaderStream, string(m.Stream))
	h.Set(HeaderVersion, strconv.FormatUint(m.Version, 10))
	if m.Prev != 0 {
		h.Set(HeaderPrev, strconv.FormatUint(m.Prev, 10))
	}
	if !m.At.IsZero() {
		h.Set(HeaderAt, strconv.FormatInt(m.At.UnixNano(), 10))
	}
	if err := nc.PublishMsg(&nats.Msg{Subject: subject.UserEvents(m.User), Header: h, Data: payload}); err != nil {
		return err
	}
	for _, cid := range m.CIDs {
		typ, id, _ := strings.Cut(cid, ":")
		if err := nc.PublishMsg(&nats.Msg{Subject: subject.ChannelEvents(typ, id), Header: h, Data: payload}); err != nil {
			return err
		}
	}
	return nil
}

// ReadMeta reads the routing headers of a relayed event.
func ReadMeta(msg *nats.Msg) (Meta, bool) {
	m := Meta{User: msg.Header.Get(HeaderUser), Stream: Stream(msg.Header.Get(HeaderStream))}
	v, err := strconv.ParseUint(msg.Header.Get(HeaderVersion), 10, 64)
	if err != nil || m.User == "" {
		return m, false
	}
	m.Version = v
	m.Prev, _ = strconv.ParseUint(msg.Header.Get(HeaderPrev), 10, 64)
	if at, err := strconv.ParseInt(msg.Header.Get(HeaderAt), 10, 64); err == nil && at > 0 {
		m.At = time.Unix(0, at)
	}
	return m, true
}
