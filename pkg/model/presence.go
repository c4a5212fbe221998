package model

import "time"

// Presence is a user's presence state, owned by the worker and stored under
// the user's id. The connection set, not a counter: applying an event twice
// or out of order must leave the same state (I3).
type Presence struct {
	// Conns are the live connections by connection id.
	Conns map[string]Conn `json:"conns,omitempty"`
	// Closed remembers connections already closed, so an "opened" delivered
	// after its "closed" does not resurrect them. Pruned after a while.
	Closed map[string]time.Time `json:"closed,omitempty"`
	// Invisible mirrors the profile flag; InvisibleRev is the profile revision
	// it came from, so older visibility changes arriving late are ignored.
	Invisible    bool   `json:"invisible,omitempty"`
	InvisibleRev uint64 `json:"invisible_rev,omitempty"`
	// LastActive is frozen while invisible.
	LastActive time.Time `json:"last_active,omitzero"`
	// Online is the visible state last emitted. Version numbers the user's
	// events (presence transitions and profile updates, one sequence) so
	// watchers can drop duplicates and stale events (I2); LastEvent is the
	// type of the event Version stands for, to re-emit it after a crash.
	Online    bool   `json:"online,omitempty"`
	Version   uint64 `json:"version,omitempty"`
	LastEvent string `json:"last_event,omitempty"`
	// ProfileRev is the newest profile revision announced to watchers.
	ProfileRev uint64 `json:"profile_rev,omitempty"`
	// LastEventAt is when the event Version stands for happened (the
	// connect or close, as its gateway saw it); WrittenAt is when a worker
	// wrote it (its clock). PrevVersion is the event before it, written at
	// PrevAt. The write times tell whether two events may still be racing
	// to the gateways: in a backlog, events are written long after they
	// happened.
	LastEventAt time.Time `json:"last_event_at,omitzero"`
	WrittenAt   time.Time `json:"written_at,omitzero"`
	PrevVersion uint64    `json:"prev_version,omitempty"`
	PrevAt      time.Time `json:"prev_at,omitzero"`
	// EmittedBy is the worker instance that wrote Version and publishes its
	// event. Another instance writing the next event publishes this one
	// again first: the first publication may still be in flight, and one
	// connection's publications arrive in order.
	EmittedBy string `json:"emitted_by,omitempty"`
}

// Conn is one live connection.
type Conn struct {
	Node     string    `json:"node"`
	Epoch    uint64    `json:"epoch"`
	OpenedAt time.Time `json:"opened_at"`
}

// Visible reports whether others see the user online (I1).
func (p Presence) Visible() bool { return len(p.Conns) > 0 && !p.Invisible }
