package filter

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// users are queryUsers documents as the api builds them (model.View): known
// fields with their Go types, custom fields as decoded from JSON, except bob's
// age, an int, to show that numbers compare whatever their Go type.
var users = map[string]Map{
	"ann": {
		"id": "ann", "name": "Ann Lee", "role": "user", "online": true, "created_at": t0,
		"last_active": t0.Add(time.Hour), "teams": []string{"red", "blue"},
		"age": 31.0, "city": "Oslo", "vip": true, "tags": []any{"a", "b"}, "score": 7.0,
	},
	"bob": {
		"id": "bob", "name": "Bob", "role": "admin", "online": false, "created_at": t0.Add(24 * time.Hour),
		"teams": []string{"blue"}, "age": 25, "city": "Rome", "vip": false, "tags": []any{"b", 3.0}, "score": "25",
	},
	"cleo": {
		"id": "cleo", "role": "user", "online": false, "created_at": t0.Add(48 * time.Hour),
		"city": nil, "tags": []any{},
	},
	"dan": {
		"id": "dan", "name": "Dan O'Brien-Smith", "role": "user", "online": true, "invisible": true,
		"created_at": t0.Add(48*time.Hour + 500*time.Millisecond), "last_active": t0,
		"age": 40.5, "city": "Oslo", "nick": "DJ",
	},
}

// channels are queryChannels documents as the api builds them.
var channels = map[string]Map{
	"messaging:a": {
		"type": "messaging", "id": "a", "cid": "messaging:a", "created_by_id": "ann",
		"members": []string{"ann", "bob"}, "member_count": 2, "created_at": t0, "updated_at": t0,
		"last_updated": t0, "frozen": false, "color": "green",
	},
	"messaging:b": {
		"type": "messaging", "id": "b", "cid": "messaging:b",
		"members": []string{"cleo"}, "member_count": 1, "created_at": t0.Add(time.Hour), "updated_at": t0.Add(time.Hour),
		"last_message_at": t0.Add(3 * time.Hour), "last_updated": t0.Add(3 * time.Hour), "frozen": true,
	},
	"team:c": {
		"type": "team", "id": "c", "cid": "team:c", "created_by_id": "bob",
		"members": []string{}, "member_count": 0, "created_at": t0.Add(2 * time.Hour), "updated_at": t0.Add(2 * time.Hour),
		"last_updated": t0.Add(2 * time.Hour), "frozen": false, "color": "blue",
	},
}

// matching parses filter and returns the sorted keys of the docs it matches.
func matching(t *testing.T, docs map[string]Map, filter string, opts ...Option) []string {
	t.Helper()
	f, err := Parse([]byte(filter), opts...)
	if err != nil {
		t.Fatalf("Parse(%s): %v", filter, err)
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(docs)) {
		if f.Match(docs[k]) {
			out = append(out, k)
		}
	}
	return out
}

type matchCase struct {
	name, filter string
	want         []string
}

func runMatches(t *testing.T, docs map[string]Map, schema Schema, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := matching(t, docs, tc.filter, WithSchema(schema)); !slices.Equal(got, tc.want) {
				t.Errorf("filter %s: got %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func all(docs map[string]Map) []string { return slices.Sorted(maps.Keys(docs)) }

func ids(s ...string) []string { return s }

// TestUserOperators covers every operator on every type of user field: known
// text (name, id), boolean (online), time (created_at), text list (teams),
// and custom strings, numbers, booleans and arrays.
func TestUserOperators(t *testing.T) {
	runMatches(t, users, Users, []matchCase{
		{"an empty filter matches everything", `{}`, all(users)},
		{"a null filter matches everything", `null`, all(users)},
		{"an empty input matches everything", ``, all(users)},

		// text
		{"a plain value on a text field is equality", `{"id": "bob"}`, ids("bob")},
		{"$eq on a text field", `{"name": {"$eq": "Ann Lee"}}`, ids("ann")},
		{"text equality is case-sensitive", `{"name": "ann lee"}`, nil},
		{"$ne on a text field matches documents without the field", `{"name": {"$ne": "Bob"}}`, ids("ann", "cleo", "dan")},
		{"$gt on a text field compares byte-wise", `{"name": {"$gt": "B"}}`, ids("bob", "dan")},
		{"$gte on a text field includes the equal value", `{"id": {"$gte": "cleo"}}`, ids("cleo", "dan")},
		{"$lt on a text field", `{"id": {"$lt": "bob"}}`, ids("ann")},
		{"$lte on a text field includes the equal value", `{"id": {"$lte": "bob"}}`, ids("ann", "bob")},
		{"$in on a text field", `{"id": {"$in": ["ann", "cleo", "zed"]}}`, ids("ann", "cleo")},
		{"$nin on a text field", `{"role": {"$nin": ["admin"]}}`, ids("ann", "cleo", "dan")},
		{"$exists true on a text field", `{"name": {"$exists": true}}`, ids("ann", "bob", "dan")},
		{"$exists false on a text field", `{"name": {"$exists": false}}`, ids("cleo")},
		{"$autocomplete matches the start of the text", `{"name": {"$autocomplete": "an"}}`, ids("ann")},
		{"$autocomplete matches the start of a later word", `{"name": {"$autocomplete": "lee"}}`, ids("ann")},
		{"$autocomplete ignores case", `{"name": {"$autocomplete": "LE"}}`, ids("ann")},
		{"$autocomplete splits words at punctuation", `{"name": {"$autocomplete": "smi"}}`, ids("dan")},
		{"$autocomplete spans words", `{"name": {"$autocomplete": "ann l"}}`, ids("ann")},
		{"$autocomplete does not match inside a word", `{"name": {"$autocomplete": "ee"}}`, nil},
		{"$autocomplete on the id, as the SDK's user search sends it", `{"$or": [{"id": {"$autocomplete": "b"}}, {"name": {"$autocomplete": "b"}}]}`, ids("bob", "dan")},
		{"an empty $autocomplete matches any text", `{"name": {"$autocomplete": ""}}`, ids("ann", "bob", "dan")},

		// boolean
		{"a plain boolean is equality", `{"online": true}`, ids("ann", "dan")},
		{"$eq false on a boolean", `{"online": {"$eq": false}}`, ids("bob", "cleo")},
		{"$ne on a boolean", `{"online": {"$ne": true}}`, ids("bob", "cleo")},
		{"$in on a boolean", `{"online": {"$in": [true, false]}}`, all(users)},
		{"$nin on a boolean", `{"online": {"$nin": [true]}}`, ids("bob", "cleo")},
		{"$exists on a boolean that only some documents hold", `{"invisible": {"$exists": true}}`, ids("dan")},
		{"a missing boolean is not false", `{"invisible": false}`, nil},
		{"$ne true matches a missing boolean", `{"invisible": {"$ne": true}}`, ids("ann", "bob", "cleo")},

		// time
		{"a plain time is equality", `{"created_at": "2025-01-02T03:04:05Z"}`, ids("ann")},
		{"$eq on a time", `{"created_at": {"$eq": "2025-01-03T03:04:05Z"}}`, ids("bob")},
		{"$ne on a time", `{"created_at": {"$ne": "2025-01-02T03:04:05Z"}}`, ids("bob", "cleo", "dan")},
		{"$gt on a time", `{"created_at": {"$gt": "2025-01-03T03:04:05Z"}}`, ids("cleo", "dan")},
		{"$gte on a time", `{"created_at": {"$gte": "2025-01-03T03:04:05Z"}}`, ids("bob", "cleo", "dan")},
		{"$lt on a time", `{"created_at": {"$lt": "2025-01-03T03:04:05Z"}}`, ids("ann")},
		{"$lte on a time", `{"created_at": {"$lte": "2025-01-03T03:04:05Z"}}`, ids("ann", "bob")},
		{"$in on a time", `{"created_at": {"$in": ["2025-01-02T03:04:05Z", "2025-01-04T03:04:05.5Z"]}}`, ids("ann", "dan")},
		{"$nin on a time", `{"created_at": {"$nin": ["2025-01-02T03:04:05Z"]}}`, ids("bob", "cleo", "dan")},
		{"$exists on a time some documents lack", `{"last_active": {"$exists": true}}`, ids("ann", "dan")},
		{"$gt on a time never matches documents without it", `{"last_active": {"$gt": "2000-01-01T00:00:00Z"}}`, ids("ann", "dan")},

		// text list
		{"a plain value matches any element of a text list", `{"teams": "blue"}`, ids("ann", "bob")},
		{"$contains on a text list", `{"teams": {"$contains": "red"}}`, ids("ann")},
		{"$in on a text list matches when any element is listed", `{"teams": {"$in": ["red", "green"]}}`, ids("ann")},
		{"$nin on a text list matches when no element is listed", `{"teams": {"$nin": ["red"]}}`, ids("bob", "cleo", "dan")},
		{"$ne on a text list matches when no element equals", `{"teams": {"$ne": "blue"}}`, ids("cleo", "dan")},
		{"$exists false on a text list", `{"teams": {"$exists": false}}`, ids("cleo", "dan")},
		{"$gt on a text list matches when any element is greater", `{"teams": {"$gt": "c"}}`, ids("ann")},

		// custom fields
		{"a plain string on a custom field", `{"city": "Oslo"}`, ids("ann", "dan")},
		{"a plain number on a custom field", `{"age": 31}`, ids("ann")},
		{"an int in the document equals the same JSON number", `{"age": 25}`, ids("bob")},
		{"a plain boolean on a custom field", `{"vip": false}`, ids("bob")},
		{"$ne on a custom field matches documents without it", `{"vip": {"$ne": true}}`, ids("bob", "cleo", "dan")},
		{"$gt on a custom number", `{"age": {"$gt": 30}}`, ids("ann", "dan")},
		{"$gte on a custom number with a fraction", `{"age": {"$gte": 40.5}}`, ids("dan")},
		{"$lt on a custom number", `{"age": {"$lt": 31}}`, ids("bob")},
		{"$lte on a custom number", `{"age": {"$lte": 31}}`, ids("ann", "bob")},
		{"two operators on one field must both hold", `{"age": {"$gt": 20, "$lt": 35}}`, ids("ann", "bob")},
		{"$gt on a custom string", `{"city": {"$gt": "P"}}`, ids("bob")},
		{"$in over mixed kinds matches each by its kind", `{"age": {"$in": [25, "31", true]}}`, ids("bob")},
		{"$nin on a custom field", `{"city": {"$nin": ["Oslo"]}}`, ids("bob", "cleo")},
		{"$contains on a custom array", `{"tags": {"$contains": "b"}}`, ids("ann", "bob")},
		{"$contains a number on a custom array", `{"tags": {"$contains": 3}}`, ids("bob")},
		{"$contains on a custom string is not a substring search", `{"city": {"$contains": "Os"}}`, nil},
		{"a plain value matches any element of a custom array", `{"tags": "a"}`, ids("ann")},
		{"$autocomplete on a custom text field", `{"nick": {"$autocomplete": "dj"}}`, ids("dan")},
		{"$autocomplete on a custom number never matches", `{"age": {"$autocomplete": "3"}}`, nil},
		{"$exists on a custom field", `{"age": {"$exists": true}}`, ids("ann", "bob", "dan")},
	})
}

// TestTypingRules: values are typed as Stream types them.
func TestTypingRules(t *testing.T) {
	runMatches(t, users, Users, []matchCase{
		{"a number never equals a string", `{"score": 25}`, nil},
		{"a string never equals a number", `{"age": "25"}`, nil},
		{"a string equals the same string", `{"score": "25"}`, ids("bob")},
		{"a boolean never equals a number", `{"vip": 1}`, nil},
		{"a number never equals a boolean", `{"score": true}`, nil},
		{"a missing field never matches $eq", `{"age": {"$eq": 40.5}}`, ids("dan")},
		{"a missing field never matches $eq null", `{"name": null}`, nil},
		{"$eq null matches an explicit null", `{"city": null}`, ids("cleo")},
		{"$ne null matches every other value and missing fields", `{"city": {"$ne": null}}`, ids("ann", "bob", "dan")},
		{"a missing field never matches $in", `{"age": {"$in": [25, 31, 40.5]}}`, ids("ann", "bob", "dan")},
		{"$in null matches an explicit null only", `{"city": {"$in": [null]}}`, ids("cleo")},
		{"$ne matches a missing field", `{"age": {"$ne": 31}}`, ids("bob", "cleo", "dan")},
		{"$nin matches a missing field", `{"age": {"$nin": [25, 31]}}`, ids("cleo", "dan")},
		{"$exists false matches only missing fields", `{"age": {"$exists": false}}`, ids("cleo")},
		{"$exists true matches an explicit null", `{"city": {"$exists": true}}`, all(users)},
		{"$gt never matches a missing field", `{"age": {"$gt": -1000}}`, ids("ann", "bob", "dan")},
		{"comparisons across kinds never match", `{"age": {"$gt": "a"}}`, nil},
		{"a custom string is not read as a date", `{"city": {"$gt": "2000-01-01T00:00:00Z"}}`, ids("ann", "bob", "dan")},
		{"$contains on a field that is not an array never matches", `{"nick": {"$contains": "DJ"}}`, nil},
		{"$contains never matches an empty array", `{"tags": {"$contains": "a"}, "id": "cleo"}`, nil},
	})
}

// TestDateSpellings: a time compares as a time whatever its RFC 3339
// spelling, with or without fractional seconds or a UTC offset.
func TestDateSpellings(t *testing.T) {
	for _, tc := range []struct {
		name, spelling string
		want           []string
	}{
		{"whole seconds in UTC", "2025-01-02T03:04:05Z", ids("ann")},
		{"milliseconds, as JavaScript writes dates", "2025-01-02T03:04:05.000Z", ids("ann")},
		{"microseconds", "2025-01-02T03:04:05.000000Z", ids("ann")},
		{"nanoseconds", "2025-01-02T03:04:05.000000000Z", ids("ann")},
		{"a UTC offset", "2025-01-02T04:04:05+01:00", ids("ann")},
		{"a zero offset", "2025-01-02T03:04:05+00:00", ids("ann")},
		{"a fraction that is not zero", "2025-01-04T03:04:05.5Z", ids("dan")},
		{"a fraction with trailing zeros", "2025-01-04T03:04:05.500Z", ids("dan")},
		{"whole seconds never equal a time with a fraction", "2025-01-04T03:04:05Z", ids("cleo")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			filter := fmt.Sprintf(`{"created_at": %q}`, tc.spelling)
			if got := matching(t, users, filter, WithSchema(Users)); !slices.Equal(got, tc.want) {
				t.Errorf("created_at = %s: got %v, want %v", tc.spelling, got, tc.want)
			}
			// Without a schema the filter value stays a string, and still
			// compares as a time against the document's time.
			if got := matching(t, users, filter); !slices.Equal(got, tc.want) {
				t.Errorf("created_at = %s without a schema: got %v, want %v", tc.spelling, got, tc.want)
			}
		})
	}
	t.Run("a document may hold its time as an RFC 3339 string", func(t *testing.T) {
		doc := Map{"created_at": "2025-01-02T03:04:05.000Z"}
		f, err := Parse([]byte(`{"created_at": {"$gte": "2025-01-02T04:04:05+01:00", "$lt": "2025-01-02T03:04:05.001Z"}}`), WithSchema(Users))
		if err != nil {
			t.Fatal(err)
		}
		if !f.Match(doc) {
			t.Error("a time held as a string did not compare as a time")
		}
	})
	t.Run("a document may hold a *time.Time", func(t *testing.T) {
		ts := t0
		f, err := Parse([]byte(`{"created_at": "2025-01-02T03:04:05Z"}`), WithSchema(Users))
		if err != nil {
			t.Fatal(err)
		}
		if !f.Match(Map{"created_at": &ts}) || f.Match(Map{"created_at": (*time.Time)(nil)}) {
			t.Error("a *time.Time did not compare as its time")
		}
	})
}

func TestChannelOperators(t *testing.T) {
	runMatches(t, channels, Channels, []matchCase{
		{"type", `{"type": "messaging"}`, ids("messaging:a", "messaging:b")},
		{"id", `{"id": {"$eq": "c"}}`, ids("team:c")},
		{"cid $in, as the SDK sends it after a reconnect", `{"cid": {"$in": ["messaging:b", "team:c", "messaging:zzz"]}}`, ids("messaging:b", "team:c")},
		{"members $in matches channels with any listed member", `{"members": {"$in": ["bob", "cleo"]}}`, ids("messaging:a", "messaging:b")},
		{"members $contains", `{"members": {"$contains": "ann"}}`, ids("messaging:a")},
		{"members $nin matches channels with none of them, empty ones too", `{"members": {"$nin": ["ann"]}}`, ids("messaging:b", "team:c")},
		{"created_by_id", `{"created_by_id": "bob"}`, ids("team:c")},
		{"created_by_id $exists false", `{"created_by_id": {"$exists": false}}`, ids("messaging:b")},
		{"created_at $gte", `{"created_at": {"$gte": "2025-01-02T04:04:05Z"}}`, ids("messaging:b", "team:c")},
		{"updated_at $lt", `{"updated_at": {"$lt": "2025-01-02T04:04:05Z"}}`, ids("messaging:a")},
		{"last_message_at $exists", `{"last_message_at": {"$exists": true}}`, ids("messaging:b")},
		{"last_message_at $gt never matches channels without messages", `{"last_message_at": {"$gt": "2000-01-01T00:00:00Z"}}`, ids("messaging:b")},
		{"member_count equality", `{"member_count": 2}`, ids("messaging:a")},
		{"member_count $gt", `{"member_count": {"$gt": 0}}`, ids("messaging:a", "messaging:b")},
		{"member_count $lte", `{"member_count": {"$lte": 1}}`, ids("messaging:b", "team:c")},
		{"member_count $in", `{"member_count": {"$in": [0, 2]}}`, ids("messaging:a", "team:c")},
		{"frozen", `{"frozen": true}`, ids("messaging:b")},
		{"frozen $ne", `{"frozen": {"$ne": true}}`, ids("messaging:a", "team:c")},
		{"a custom field", `{"color": "green"}`, ids("messaging:a")},
		{"a custom field and members together", `{"color": {"$in": ["green", "blue"]}, "members": {"$in": ["ann"]}}`, ids("messaging:a")},
	})
}

func TestLogicalOperators(t *testing.T) {
	runMatches(t, users, Users, []matchCase{
		{"$and needs every filter", `{"$and": [{"online": false}, {"age": {"$exists": true}}]}`, ids("bob")},
		{"$or needs one filter", `{"$or": [{"id": "ann"}, {"city": "Rome"}]}`, ids("ann", "bob")},
		{"$nor needs none of the filters", `{"$nor": [{"id": "ann"}, {"online": false}]}`, ids("dan")},
		{"fields beside $or must hold too", `{"city": "Oslo", "$or": [{"id": "ann"}, {"id": "bob"}]}`, ids("ann")},
		{"$or inside $and", `{"$and": [{"$or": [{"id": "ann"}, {"id": "bob"}]}, {"$or": [{"role": "admin"}, {"age": 31}]}]}`, ids("ann", "bob")},
		{"$nor inside $or", `{"$or": [{"$nor": [{"online": true}, {"age": {"$exists": true}}]}, {"id": "dan"}]}`, ids("cleo", "dan")},
		{"$and inside $nor inside $and", `{"$and": [{"$nor": [{"$and": [{"city": "Oslo"}, {"online": true}]}]}]}`, ids("bob", "cleo")},
		{"an empty object inside $or matches everything", `{"$or": [{}, {"id": "zed"}]}`, all(users)},
		{"ten levels of nesting are allowed", nested(10, `{"id": "ann"}`), ids("ann")},
	})
}

// nested wraps inner in depth levels of $and.
func nested(depth int, inner string) string {
	return strings.Repeat(`{"$and": [`, depth) + inner + strings.Repeat(`]}`, depth)
}

func TestParseErrors(t *testing.T) {
	big := `{"id": {"$in": [` + strings.Repeat(`"x",`, MaxList) + `"y"]}}`
	manyOr := `{"$or": [` + strings.Repeat(`{},`, MaxList) + `{}]}`
	manyConds := `{"$or": [` + strings.Repeat(`{"a": 1},`, MaxConditions) + `{"a": 1}]}`
	huge := `{"a": "` + strings.Repeat("x", MaxBytes) + `"}`
	for _, tc := range []struct{ name, filter, want string }{
		// shape
		{"a filter that is not JSON", `{`, `filter_conditions is not valid JSON: syntax error at byte 1`},
		{"a filter with a syntax error", `{"a": x}`, `filter_conditions is not valid JSON: syntax error at byte 7`},
		{"a filter that is not an object", `[1]`, `filter_conditions must be an object`},
		{"a filter that is a string", `"id"`, `filter_conditions must be an object`},
		{"a filter over 64 KiB", huge, `filter_conditions is larger than 65536 bytes`},
		// operators
		{"an unknown field operator", `{"id": {"$nosuchop": 1}}`, `unknown operator $nosuchop`},
		{"an unknown top-level operator", `{"$xor": [{}]}`, `unknown operator $xor`},
		{"a field operator at the top level", `{"$in": ["a"]}`, `$in must be applied to a field, as in {"name": {"$in": ...}}`},
		{"a logical operator inside a field", `{"id": {"$or": [{"id": "a"}]}}`, `$or must be at the top of a filter, not inside field "id"`},
		{"an operator-less object", `{"id": {"a": 1}}`, `field "id": "a" is not an operator, and objects are not comparable`},
		{"an empty condition", `{"id": {}}`, `condition on field "id" is empty`},
		{"a plain array", `{"id": ["a"]}`, `field "id": use $in to match one of several values`},
		// logical operators
		{"$or of non-objects", `{"$or": [1]}`, `$or must be a non-empty array of filters`},
		{"$and that is not an array", `{"$and": {"id": "a"}}`, `$and must be a non-empty array of filters`},
		{"an empty $nor", `{"$nor": []}`, `$nor must be a non-empty array of filters`},
		{"$or over 1000 filters", manyOr, `$or has more than 1000 filters`},
		{"nesting deeper than 10", nested(11, `{}`), `filter is nested deeper than 10 levels`},
		{"more than 200 conditions", manyConds, `filter has more than 200 conditions`},
		// $in and $nin
		{"$in that is not an array", `{"id": {"$in": "a"}}`, `$in of field "id" must be an array`},
		{"$nin that is not an array", `{"id": {"$nin": {"a": 1}}}`, `$nin of field "id" must be an array`},
		{"an empty $in", `{"id": {"$in": []}}`, `$in of field "id" must not be empty`},
		{"an empty $nin", `{"id": {"$nin": []}}`, `$nin of field "id" must not be empty`},
		{"$in over 1000 values", big, `$in of field "id" has more than 1000 values`},
		{"$in holding an object", `{"age": {"$in": [{"a": 1}]}}`, `each value of $in of field "age" must be a string, a number or a boolean or null`},
		{"$in holding an array", `{"age": {"$in": [[1]]}}`, `each value of $in of field "age" must be a string, a number or a boolean or null`},
		// other operand types
		{"$eq with an array", `{"age": {"$eq": [1]}}`, `$eq of field "age" must be a string, a number or a boolean or null`},
		{"$ne with an object", `{"age": {"$ne": {}}}`, `$ne of field "age" must be a string, a number or a boolean or null`},
		{"$exists with a number", `{"a": {"$exists": 1}}`, `$exists of field "a" must be true or false`},
		{"$exists with a string", `{"a": {"$exists": "true"}}`, `$exists of field "a" must be true or false`},
		{"$autocomplete with a number", `{"name": {"$autocomplete": 1}}`, `$autocomplete of field "name" must be a string`},
		{"$autocomplete with null", `{"nick": {"$autocomplete": null}}`, `$autocomplete of field "nick" must be a string`},
		{"$gt with an array", `{"age": {"$gt": [1]}}`, `$gt of field "age" must be a string or a number`},
		{"$gte with an object", `{"age": {"$gte": {"a": 1}}}`, `$gte of field "age" must be a string or a number`},
		{"$lt with a boolean", `{"age": {"$lt": true}}`, `$lt of field "age" must be a string or a number`},
		{"$lte with null", `{"age": {"$lte": null}}`, `$lte of field "age" must be a string or a number`},
		{"$contains with null", `{"tags": {"$contains": null}}`, `$contains of field "tags" must be a string, a number or a boolean`},
		{"$contains with an array", `{"tags": {"$contains": ["a"]}}`, `$contains of field "tags" must be a string, a number or a boolean`},
		// field names
		{"an empty field name", `{"": 1}`, `field name must have 1 to 256 bytes`},
		{"a field name over 256 bytes", `{"` + strings.Repeat("a", 257) + `": 1}`, `field name must have 1 to 256 bytes`},
		{"a field name with a control character", `{"a\u0000b": 1}`, `field name must not hold control or invisible characters`},
		{"a field name with a zero-width space", `{"a\u200bb": 1}`, `field name must not hold control or invisible characters`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.filter))
			if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != tc.want {
				t.Errorf("Parse(%.80s):\n got %v\nwant %s", tc.filter, err, tc.want)
			}
		})
	}
}

// TestSchemaErrors: a schema rejects conditions on known fields that can
// never mean anything.
func TestSchemaErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		schema Schema
		filter string
		want   string
	}{
		{"$autocomplete on a boolean", Users, `{"online": {"$autocomplete": "t"}}`, `$autocomplete applies to text fields only, and field "online" is a boolean`},
		{"$autocomplete on a time", Users, `{"created_at": {"$autocomplete": "2025"}}`, `$autocomplete applies to text fields only, and field "created_at" is a time`},
		{"$autocomplete on a text list", Users, `{"teams": {"$autocomplete": "r"}}`, `$autocomplete applies to text fields only, and field "teams" is an array of strings`},
		{"$autocomplete on a number", Channels, `{"member_count": {"$autocomplete": "1"}}`, `$autocomplete applies to text fields only, and field "member_count" is a number`},
		{"$contains on text", Users, `{"name": {"$contains": "a"}}`, `$contains applies to array fields only, and field "name" is text`},
		{"$contains on a boolean", Channels, `{"frozen": {"$contains": true}}`, `$contains applies to array fields only, and field "frozen" is a boolean`},
		{"$gt on a boolean", Users, `{"online": {"$gt": 0}}`, `$gt does not apply to field "online", which is a boolean`},
		{"a number for a text field", Users, `{"id": 1}`, `$eq of field "id" must be a string or null`},
		{"a string for a boolean field", Users, `{"online": "true"}`, `$eq of field "online" must be true or false or null`},
		{"a string for a number field", Channels, `{"member_count": {"$gt": "2"}}`, `$gt of field "member_count" must be a number`},
		{"a number for a time field", Users, `{"created_at": {"$gt": 1735787045}}`, `$gt of field "created_at" must be an RFC 3339 time`},
		{"a date without a time", Users, `{"created_at": {"$gt": "2025-01-02"}}`, `$gt of field "created_at" must be an RFC 3339 time`},
		{"a time without a zone", Channels, `{"last_message_at": {"$lt": "2025-01-02T03:04:05"}}`, `$lt of field "last_message_at" must be an RFC 3339 time`},
		{"a bad time in $in", Users, `{"last_active": {"$in": ["2025-01-02T03:04:05Z", "yesterday"]}}`, `each value of $in of field "last_active" must be an RFC 3339 time or null`},
		{"a number in a text list's $in", Channels, `{"members": {"$in": ["ann", 1]}}`, `each value of $in of field "members" must be a string or null`},
		{"a number for a text list's $contains", Users, `{"teams": {"$contains": 1}}`, `$contains of field "teams" must be a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.filter), WithSchema(tc.schema))
			if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != tc.want {
				t.Errorf("Parse(%s):\n got %v\nwant %s", tc.filter, err, tc.want)
			}
			if _, err := Parse([]byte(tc.filter)); err != nil {
				t.Errorf("without a schema the field is custom and %s parses, but got %v", tc.filter, err)
			}
		})
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		name, filter string
		want         []any
		ok           bool
	}{
		{"a plain value pins the field", `{"id": "a"}`, []any{"a"}, true},
		{"$in pins the field to its values", `{"id": {"$in": ["a", "b"]}, "x": 1}`, []any{"a", "b"}, true},
		{"$in inside the top-level $and pins the field", `{"$and": [{"id": {"$in": ["a"]}}]}`, []any{"a"}, true},
		{"$or does not pin the field", `{"$or": [{"id": "a"}]}`, nil, false},
		{"$nin does not pin the field", `{"id": {"$nin": ["a"]}}`, nil, false},
		{"other fields do not pin it", `{"name": "a"}`, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := f.Values("id")
			if ok != tc.ok || !slices.Equal(got, tc.want) {
				t.Errorf("Values(id) of %s: got %v %v, want %v %v", tc.filter, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFromValueRejectsFieldNamesOfInvalidUTF8(t *testing.T) {
	_, err := FromValue(map[string]any{"a\xffb": 1})
	if want := "field name must be UTF-8 text not starting with $"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestFromValueTakesGoValues(t *testing.T) {
	f, err := FromValue(map[string]any{"age": map[string]any{"$in": []any{25, int64(31)}}}, WithSchema(Users))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range all(users) {
		if f.Match(users[k]) {
			got = append(got, k)
		}
	}
	if want := ids("ann", "bob"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestMembersNamesTheValuesAskedFor(t *testing.T) {
	for _, tc := range []struct {
		name, filter string
		want         []string
		only         bool
	}{
		{"no condition on the field", `{"type": "messaging"}`, nil, true},
		{"$in", `{"members": {"$in": ["ann", "bob"]}}`, []string{"ann", "bob"}, true},
		{"everywhere in the filter", `{"$or": [{"members": "ann"}, {"$nor": [{"members": {"$nin": ["bob"]}}]}], "members": {"$contains": "cat", "$exists": true}}`, []string{"ann", "bob", "cat"}, true},
		{"null asks for no string", `{"members": {"$in": [null, "ann"]}, "$or": [{"members": null}]}`, []string{"ann"}, true},
		{"a range reads every value", `{"members": {"$gt": "m"}}`, []string{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.filter), WithSchema(Channels))
			if err != nil {
				t.Fatal(err)
			}
			got, only := f.Members("members")
			slices.Sort(got)
			if only != tc.only || len(got) != len(tc.want) || len(got) > 0 && !slices.Equal(got, tc.want) {
				t.Errorf("Members of %s: got %v %v, want %v %v", tc.filter, got, only, tc.want, tc.only)
			}
			// The claim itself: with only, matching on the values the
			// document holds of those asked for is matching on all it holds.
			for _, doc := range channels {
				held := doc["members"].([]string)
				kept := []string{}
				for _, m := range held {
					if slices.Contains(got, m) {
						kept = append(kept, m)
					}
				}
				narrowed := maps.Clone(doc)
				narrowed["members"] = kept
				if only && f.Match(doc) != f.Match(narrowed) {
					t.Errorf("%s matches %v with all its members but not with %v", tc.filter, held, kept)
				}
			}
		})
	}
}
