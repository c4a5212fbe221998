package model

import (
	"testing"
	"time"
)

func TestViewHidesInvisibleUsers(t *testing.T) {
	now := time.Now().UTC()
	online := Presence{Conns: map[string]Conn{"c": {Node: "gw"}}, Online: true, LastActive: now}
	tests := []struct {
		name          string
		user          User
		p             Presence
		viewer        Viewer
		online        bool
		showsFlag     bool
		flagWhenShown bool
	}{
		{"a connected user reads online to others", User{ID: "a"}, online, Other, true, false, false},
		{"an invisible profile reads offline to others before the worker knows", User{ID: "a", Invisible: true}, online, Other, false, false, false},
		{"an invisible user reads offline to themselves, with the flag", User{ID: "a", Invisible: true}, online, Self, false, true, true},
		{"a server-side read shows the flag", User{ID: "a", Invisible: true}, online, Server, false, true, true},
		{"a visible user's flag is false for server-side reads", User{ID: "a"}, online, Server, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := View(tt.user, tt.p, tt.viewer)
			if v["online"] != tt.online {
				t.Fatalf("online = %v, want %v", v["online"], tt.online)
			}
			flag, shown := v["invisible"]
			if shown != tt.showsFlag || (shown && flag != tt.flagWhenShown) {
				t.Fatalf("invisible = %v (shown %v), want shown %v value %v", flag, shown, tt.showsFlag, tt.flagWhenShown)
			}
		})
	}
}

func TestUserRoundTripKeepsCustomFieldsAtTopLevel(t *testing.T) {
	var u User
	if err := u.UnmarshalJSON([]byte(`{"id":"a","name":"A","color":"red","online":true,"teams":["x"]}`)); err != nil {
		t.Fatal(err)
	}
	if u.Custom["color"] != "red" || u.Name != "A" || len(u.Teams) != 1 {
		t.Fatalf("decoded %+v", u)
	}
	if _, kept := u.Custom["online"]; kept {
		t.Fatal("server-owned field online was stored as custom")
	}
	if err := u.UnmarshalJSON([]byte(`{"id":"a","invisible":"yes"}`)); err == nil {
		t.Fatal("a non-boolean invisible was accepted")
	}
}
