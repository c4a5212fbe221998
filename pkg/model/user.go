// Package model holds the records Presence stores in JetStream KV and the
// views of them that clients see.
//
// A user is two records: the profile (written by the api and, for connect-time
// details, by the gateway) and the presence state (written only by the
// worker). View joins them for one reader, hiding what that reader may not see.
package model

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// User is a user's profile. Custom fields sit at the top level on the wire and
// in storage, as in Stream's API.
type User struct {
	ID        string
	Role      string
	Name      string
	Image     string
	Status    string
	Invisible bool
	Teams     []string
	CreatedAt time.Time
	UpdatedAt time.Time
	Custom    map[string]any
}

// ServerOwned lists fields clients may send but the server decides; they are
// ignored on input.
var ServerOwned = map[string]bool{
	"online": true, "last_active": true, "created_at": true, "updated_at": true,
	"banned": true, "deactivated_at": true, "deleted_at": true, "last_engaged_at": true,
}

// reserved fields are never stored as custom fields.
var reserved = map[string]bool{
	"id": true, "role": true, "name": true, "image": true, "status": true,
	"invisible": true, "teams": true,
}

// Limits on what a client may store in a user profile.
const (
	MaxUserBytes   = 5 * 1024 // Stream's limit on custom user data
	MaxStatusBytes = 256
	MaxNameBytes   = 256
)

// Set applies one field of client input to the profile. Server-owned fields
// are ignored; a wrong type for a known field is an error.
func (u *User) Set(field string, v any) error {
	if ServerOwned[field] {
		return nil
	}
	str := func() (string, error) {
		if v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("field %q must be a string", field)
		}
		return s, nil
	}
	var err error
	switch field {
	case "id":
		return nil // the id never changes through Set
	case "role":
		u.Role, err = str()
	case "name":
		u.Name, err = str()
		if err == nil && len(u.Name) > MaxNameBytes {
			err = fmt.Errorf("field name is longer than %d bytes", MaxNameBytes)
		}
	case "image":
		u.Image, err = str()
	case "status":
		u.Status, err = str()
		if err == nil && len(u.Status) > MaxStatusBytes {
			err = fmt.Errorf("field status is longer than %d bytes", MaxStatusBytes)
		}
	case "invisible":
		b, ok := v.(bool)
		if !ok && v != nil {
			return fmt.Errorf("field invisible must be a boolean")
		}
		u.Invisible = b
	case "teams":
		u.Teams = nil
		if v == nil {
			return nil
		}
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("field teams must be an array of strings")
		}
		for _, t := range list {
			s, ok := t.(string)
			if !ok {
				return fmt.Errorf("field teams must be an array of strings")
			}
			u.Teams = append(u.Teams, s)
		}
	default:
		if u.Custom == nil {
			u.Custom = map[string]any{}
		}
		u.Custom[field] = v
	}
	return err
}

// Unset removes one field.
func (u *User) Unset(field string) {
	switch field {
	case "name":
		u.Name = ""
	case "image":
		u.Image = ""
	case "status":
		u.Status = ""
	case "invisible":
		u.Invisible = false
	case "teams":
		u.Teams = nil
	case "role":
		u.Role = "user"
	default:
		delete(u.Custom, field)
	}
}

// CheckSize rejects a profile larger than MaxUserBytes once stored.
func (u User) CheckSize() error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if len(b) > MaxUserBytes {
		return fmt.Errorf("user %s would be larger than %d bytes", u.ID, MaxUserBytes)
	}
	return nil
}

// Clone returns a deep enough copy to modify without touching u.
func (u User) Clone() User {
	u.Teams = append([]string(nil), u.Teams...)
	u.Custom = maps.Clone(u.Custom)
	return u
}

// fields renders the profile as a flat map; the stored form and the base of
// every view.
func (u User) fields() map[string]any {
	m := make(map[string]any, len(u.Custom)+10)
	for k, v := range u.Custom {
		m[k] = v
	}
	m["id"] = u.ID
	m["role"] = u.Role
	if u.Name != "" {
		m["name"] = u.Name
	}
	if u.Image != "" {
		m["image"] = u.Image
	}
	if u.Status != "" {
		m["status"] = u.Status
	}
	if u.Invisible {
		m["invisible"] = true
	}
	if len(u.Teams) > 0 {
		m["teams"] = u.Teams
	}
	if !u.CreatedAt.IsZero() {
		m["created_at"] = u.CreatedAt
	}
	if !u.UpdatedAt.IsZero() {
		m["updated_at"] = u.UpdatedAt
	}
	return m
}

// MarshalJSON writes the stored form: known fields plus custom fields at the
// top level.
func (u User) MarshalJSON() ([]byte, error) { return json.Marshal(u.fields()) }

// UnmarshalJSON reads the stored form (or client input: server-owned fields
// are dropped, known fields type-checked).
func (u *User) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*u = User{}
	for k, v := range m {
		switch k {
		case "id":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("field id must be a string")
			}
			u.ID = s
		case "created_at", "updated_at":
			s, _ := v.(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				continue // client-sent or malformed: server-owned anyway
			}
			if k == "created_at" {
				u.CreatedAt = t
			} else {
				u.UpdatedAt = t
			}
		default:
			if err := u.Set(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Viewer says who reads a user, which decides what of it shows.
type Viewer int

const (
	// Other is another user: an invisible user reads as offline, without the flag.
	Other Viewer = iota
	// Self is the user themselves: the invisible flag shows, presence reads as others see it.
	Self
	// Server is a server-side caller: like Self, the flag shows.
	Server
)

// View is a user as one reader sees it: the profile joined with presence.
// An invisible user is offline to everyone (I1); only Self and Server see the
// flag itself.
func View(u User, p Presence, v Viewer) map[string]any {
	if u.Invisible {
		// The profile decides at once, before the worker has mirrored the
		// flag: an invisible user is never shown online, not for a moment.
		p.Invisible = true
	}
	m := u.fields()
	if v == Other {
		delete(m, "invisible")
	} else {
		m["invisible"] = u.Invisible // shown either way, so {invisible: false} finds visible users
	}
	m["online"] = p.Visible()
	if !p.LastActive.IsZero() {
		m["last_active"] = p.LastActive
	}
	m["banned"] = false
	if u.Role == "" {
		m["role"] = "user"
	}
	return m
}
