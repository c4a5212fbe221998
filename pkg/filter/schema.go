package filter

// Type is the type of a known field's values. It lets Parse reject a filter
// that can never mean anything ($autocomplete on a boolean, a date compared
// with a number) with a message, instead of silently matching nothing.
type Type uint8

// Field types.
const (
	// Custom is a field the schema does not know: any JSON value, typed by
	// the value itself (a number never equals a string).
	Custom Type = iota
	// Text is a string; $autocomplete applies to it.
	Text
	// Number is a JSON number.
	Number
	// Bool is true or false.
	Bool
	// Time is a time.Time in documents and an RFC 3339 string (with or
	// without fractional seconds) in filters; it compares as a time.
	Time
	// TextList is an array of strings: $contains applies, and $eq/$in match
	// when any element does.
	TextList
)

func (t Type) String() string {
	switch t {
	case Text:
		return "text"
	case Number:
		return "a number"
	case Bool:
		return "a boolean"
	case Time:
		return "a time"
	case TextList:
		return "an array of strings"
	}
	return "a custom field"
}

// Schema types the known fields of one kind of document; fields it does not
// list are Custom.
type Schema map[string]Type

// Users is the schema of queryUsers documents (model.View of a user).
// invisible only shows to the user themselves and to server-side callers, so
// for anyone else it reads as missing.
var Users = Schema{
	"id": Text, "name": Text, "role": Text, "image": Text, "status": Text,
	"online": Bool, "invisible": Bool, "banned": Bool,
	"last_active": Time, "created_at": Time, "updated_at": Time,
	"teams": TextList,
}

// Channels is the schema of queryChannels documents. last_updated is the
// default sort key: last_message_at, or created_at before any message.
var Channels = Schema{
	"type": Text, "id": Text, "cid": Text, "created_by_id": Text,
	"members":    TextList,
	"created_at": Time, "updated_at": Time, "last_message_at": Time, "last_updated": Time,
	"member_count": Number,
	"frozen":       Bool, "disabled": Bool,
}

// Members is the schema of queryMembers documents: a member's own fields
// (user_id, channel_role, when it joined) joined with its user as the caller
// sees them (id, name, online, last_active; every user field also as
// "user.<field>"). online never shows an invisible user.
var Members = Schema{
	"user_id": Text, "channel_role": Text, "cid": Text,
	"id": Text, "name": Text, "user.id": Text, "user.name": Text, "user.role": Text,
	"online": Bool, "banned": Bool, "is_moderator": Bool, "user.online": Bool,
	"created_at": Time, "updated_at": Time, "last_active": Time, "user.last_active": Time,
	"user.created_at": Time, "user.updated_at": Time,
	"user.teams": TextList,
}

// Option tunes Parse.
type Option func(*parser)

// WithSchema makes Parse check conditions on the fields s knows against
// their types, and read filter dates of Time fields as times.
func WithSchema(s Schema) Option {
	return func(p *parser) { p.schema = s }
}
