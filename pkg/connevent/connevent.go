// Package connevent is the worker's input: connection and visibility events
// published to JetStream by gateways and api nodes.
package connevent

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Kind says what happened.
type Kind string

const (
	// Opened: a connection was accepted (after its token check).
	Opened Kind = "opened"
	// Closed: a connection ended, for whatever reason.
	Closed Kind = "closed"
	// Active: a connection is still alive; refreshes last_active.
	Active Kind = "active"
	// Visibility: the user's invisible flag changed in their profile.
	Visibility Kind = "visibility"
	// ProfileChanged: other fields watchers see (status, name, custom
	// fields) changed. The worker emits user.updated in the same per-user
	// sequence as presence changes, so the two never overtake each other.
	ProfileChanged Kind = "profile_changed"
	// NodeStarted: a gateway node started under a new epoch; every older
	// connection of that node is gone (I6).
	NodeStarted Kind = "node_started"
	// NodeExpired: a gateway node's lease lapsed; every connection of an
	// epoch older than Epoch is gone (I4).
	NodeExpired Kind = "node_expired"
)

// Event is one input event of the worker.
type Event struct {
	Kind   Kind      `json:"kind"`
	User   string    `json:"user,omitempty"`
	ConnID string    `json:"conn_id,omitempty"`
	Node   string    `json:"node,omitempty"`
	Epoch  uint64    `json:"epoch,omitempty"`
	At     time.Time `json:"at"`
	// Grace delays applying a Closed: a user who reconnects within it (say,
	// through another gateway while this one drains) never reads offline.
	Grace time.Duration `json:"grace,omitempty"`
	// Invisible and ProfileRev carry the profile's invisible flag and the
	// profile revision it was read at (Opened and Visibility).
	Invisible  bool   `json:"invisible,omitempty"`
	ProfileRev uint64 `json:"profile_rev,omitempty"`
}

// MsgID is the JetStream deduplication key: the same event published twice
// (a retried publish) is stored once.
func (e Event) MsgID() string {
	switch e.Kind {
	case Visibility:
		return fmt.Sprintf("vis:%s:%d", e.User, e.ProfileRev)
	case ProfileChanged:
		return fmt.Sprintf("profile:%s:%d", e.User, e.ProfileRev)
	case NodeStarted:
		return fmt.Sprintf("node:%s:%d", e.Node, e.Epoch)
	case NodeExpired:
		return fmt.Sprintf("expired:%s:%d", e.Node, e.Epoch)
	case Active:
		return "active:" + e.ConnID + ":" + strconv.FormatInt(e.At.Unix(), 10)
	default:
		return string(e.Kind) + ":" + e.ConnID
	}
}

// Encode returns the wire form.
func (e Event) Encode() []byte {
	b, _ := json.Marshal(e) // plain struct: cannot fail
	return b
}

// Decode parses the wire form.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("connevent: %w", err)
	}
	switch e.Kind {
	case Opened, Closed, Active, Visibility, ProfileChanged, NodeStarted, NodeExpired:
	default:
		return e, fmt.Errorf("connevent: unknown kind %q", e.Kind)
	}
	return e, nil
}
