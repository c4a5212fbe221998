package model

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzUserJSON: UnmarshalJSON reads client input (each user of an upsert)
// as well as stored profiles. On any input it never panics and decides the
// same way twice; a user it accepts keeps name and status within their
// limits and no server-owned or known field among its custom fields, and
// survives storage: its stored form reads back as the same user.
func FuzzUserJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"ann","name":"Ann","image":"https://x/a.png","status":"away","teams":["red","blue"],"invisible":true,"color":"green"}`,
		`{"id":"ann","role":"admin","created_at":"2025-01-02T03:04:05.123456789+01:00","updated_at":"not a date"}`,
		`{"id":"ann","online":true,"last_active":"2025-01-02T03:04:05Z","banned":true,"deleted_at":null}`,
		`{"id":7}`,
		`{"name":null,"status":null,"invisible":null,"teams":null,"role":null}`,
		`{"teams":["a",1]}`,
		`{"invisible":"yes"}`,
		`{"name":"` + strings.Repeat("n", MaxNameBytes+1) + `"}`,
		`{"status":"` + strings.Repeat("s", MaxStatusBytes) + `"}`,
		`{"nested":{"a":[1,2.5,-0,1e308,null,true,{"b":"c"}]},"":"empty key"}`,
		`{"id":"a","id":"b"}`,
		`{"created_at":"0000-01-01T00:00:00+01:00"}`,
		`[]`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var u User
		err := u.UnmarshalJSON(b)
		var again User
		if err2 := again.UnmarshalJSON(b); (err == nil) != (err2 == nil) {
			t.Fatalf("UnmarshalJSON(%q) failed %v, then %v", b, err, err2)
		}
		if err != nil {
			return
		}
		if len(u.Name) > MaxNameBytes || len(u.Status) > MaxStatusBytes {
			t.Fatalf("UnmarshalJSON(%q) accepted a name of %d bytes, a status of %d", b, len(u.Name), len(u.Status))
		}
		for k := range u.Custom {
			if ServerOwned[k] || reserved[k] {
				t.Fatalf("UnmarshalJSON(%q) kept %q as a custom field", b, k)
			}
		}
		stored, err := json.Marshal(u)
		if err != nil {
			t.Fatalf("user %+v read from %q cannot be stored: %v", u, b, err)
		}
		var back User
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatalf("stored form %s of %q does not read back: %v", stored, b, err)
		}
		if !sameUser(u, back) {
			t.Fatalf("%q read as %+v, stored as %s, read back as %+v", b, u, stored, back)
		}
	})
}

// sameUser compares users, their times by instant (a stored time keeps its
// offset, not its *time.Location).
func sameUser(a, b User) bool {
	sameTime := func(x, y time.Time) bool { return x.Equal(y) }
	if !sameTime(a.CreatedAt, b.CreatedAt) || !sameTime(a.UpdatedAt, b.UpdatedAt) {
		return false
	}
	a.CreatedAt, a.UpdatedAt, b.CreatedAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}
