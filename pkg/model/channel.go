package model

import (
	"encoding/json"
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

// Channel is a stored channel. Custom fields sit at the top level on the
// wire. Its members are not part of it: each is a key of its own
// (store.MemberKey), so a channel's value stays small however many members
// it has, and a member change writes one member.
type Channel struct {
	Type        string
	ID          string
	CreatedByID string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Custom      map[string]any
	// Inline are the members of a channel stored before members had keys of
	// their own, until an api node moves them there (api/migrate.go). They
	// are kept, never changed, by every other write of the channel.
	Inline []Member
}

// CID is the channel's "type:id".
func (c Channel) CID() string { return c.Type + ":" + c.ID }

type channelStored struct {
	Type        string         `json:"type"`
	ID          string         `json:"id"`
	CreatedByID string         `json:"created_by_id,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	Members     []Member       `json:"members,omitempty"`
	Custom      map[string]any `json:"custom,omitempty"`
}

// MarshalJSON writes the stored form.
func (c Channel) MarshalJSON() ([]byte, error) {
	return json.Marshal(channelStored{c.Type, c.ID, c.CreatedByID, c.CreatedAt, c.UpdatedAt, c.Inline, c.Custom})
}

// UnmarshalJSON reads the stored form.
func (c *Channel) UnmarshalJSON(b []byte) error {
	var s channelStored
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = Channel{Type: s.Type, ID: s.ID, CreatedByID: s.CreatedByID, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Custom: s.Custom, Inline: s.Members}
	return nil
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
