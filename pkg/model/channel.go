package model

import (
	"encoding/json"
	"maps"
	"reflect"
	"time"
)

// ChannelType is a channel type's configuration. ConnectEvents is the
// presence switch: off means no presence events on that type's channels.
// OpenReads lets any user read and watch its channels, members or not (a
// livestream's audience); otherwise only members and the creator may.
type ChannelType struct {
	Name          string    `json:"name"`
	ConnectEvents bool      `json:"connect_events"`
	OpenReads     bool      `json:"open_reads"`
	TypingEvents  bool      `json:"typing_events"`
	ReadEvents    bool      `json:"read_events"`
	Replies       bool      `json:"replies"`
	Reactions     bool      `json:"reactions"`
	Search        bool      `json:"search"`
	Mutes         bool      `json:"mutes"`
	MaxMessageLen int       `json:"max_message_length"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// DefaultChannelTypes are the types that exist out of the box, as in Stream,
// all with presence on; livestream's channels are open to every user, as
// Stream's livestream permissions are.
func DefaultChannelTypes(now time.Time) []ChannelType {
	var out []ChannelType
	for _, n := range []string{"messaging", "livestream", "team", "gaming", "commerce"} {
		out = append(out, ChannelType{
			Name: n, ConnectEvents: true, OpenReads: n == "livestream", TypingEvents: true, ReadEvents: true,
			Replies: true, Reactions: true, Search: true, Mutes: true,
			MaxMessageLen: 5000, CreatedAt: now, UpdatedAt: now,
		})
	}
	return out
}

// Member is a user's membership in a channel. Custom fields sit at the top
// level of the member on the wire.
type Member struct {
	UserID      string    `json:"user_id"`
	ChannelRole string    `json:"channel_role"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// ArchivedAt and PinnedAt are when the member archived or pinned the
	// channel for themselves (zero: not).
	ArchivedAt time.Time      `json:"archived_at,omitzero"`
	PinnedAt   time.Time      `json:"pinned_at,omitzero"`
	Custom     map[string]any `json:"custom,omitempty"`
}

// Same reports whether m and o say the same of the member (role, custom
// fields, archived and pinned; not when it joined or was updated).
func (m Member) Same(o Member) bool {
	return m.UserID == o.UserID && m.ChannelRole == o.ChannelRole && m.ArchivedAt.Equal(o.ArchivedAt) &&
		m.PinnedAt.Equal(o.PinnedAt) && reflect.DeepEqual(m.Custom, o.Custom)
}

// MemberReserved are member fields that are never custom: the member's own
// and those the SDK reads from a member.
var MemberReserved = map[string]bool{
	"user_id": true, "user": true, "channel_role": true, "role": true, "created_at": true, "updated_at": true,
	"banned": true, "shadow_banned": true, "ban_expires": true, "is_moderator": true, "invited": true,
	"invite_accepted_at": true, "invite_rejected_at": true, "status": true, "pinned_at": true,
	"archived_at": true, "notifications_muted": true, "deleted_at": true, "cid": true, "id": true,
}

// Channel is a stored channel. Custom fields sit at the top level on the wire.
type Channel struct {
	Type        string
	ID          string
	CreatedByID string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Members     []Member
	Custom      map[string]any
}

// CID is the channel's "type:id".
func (c Channel) CID() string { return c.Type + ":" + c.ID }

// HasMember reports whether user is a member.
func (c Channel) HasMember(user string) bool { return c.MemberIndex(user) >= 0 }

// MemberIndex is the index of user's member in c.Members, or -1.
func (c Channel) MemberIndex(user string) int {
	for i, m := range c.Members {
		if m.UserID == user {
			return i
		}
	}
	return -1
}

type channelStored struct {
	Type        string         `json:"type"`
	ID          string         `json:"id"`
	CreatedByID string         `json:"created_by_id,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	Members     []Member       `json:"members"`
	Custom      map[string]any `json:"custom,omitempty"`
}

// MarshalJSON writes the stored form.
func (c Channel) MarshalJSON() ([]byte, error) {
	return json.Marshal(channelStored{c.Type, c.ID, c.CreatedByID, c.CreatedAt, c.UpdatedAt, c.Members, c.Custom})
}

// UnmarshalJSON reads the stored form.
func (c *Channel) UnmarshalJSON(b []byte) error {
	var s channelStored
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = Channel{s.Type, s.ID, s.CreatedByID, s.CreatedAt, s.UpdatedAt, s.Members, s.Custom}
	return nil
}

// Clone returns a copy safe to modify (a member's custom fields are
// replaced whole, never changed in place).
func (c Channel) Clone() Channel {
	c.Members = append([]Member(nil), c.Members...)
	c.Custom = maps.Clone(c.Custom)
	return c
}

// ChannelReserved are channel fields that are never custom.
var ChannelReserved = map[string]bool{
	"id": true, "type": true, "cid": true, "created_at": true, "updated_at": true,
	"created_by": true, "created_by_id": true, "members": true, "member_count": true,
	"config": true, "own_capabilities": true, "frozen": true, "disabled": true,
	"last_message_at": true, "deleted_at": true, "hidden": true, "truncated_at": true,
}

// Memberships is the list of channels one user belongs to, kept by the api so
// the worker can route a user's transitions to channel subjects.
type Memberships struct {
	CIDs []string `json:"cids"`
}
