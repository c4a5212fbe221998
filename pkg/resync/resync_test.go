package resync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/subject"
)

// TestSendSplitsIntoBoundedMessages: 1,500 users and 700 channels go out in
// messages of at most MaxItems that decode back to everything, once.
func TestSendSplitsIntoBoundedMessages(t *testing.T) {
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(subject.Resync)
	if err != nil {
		t.Fatal(err)
	}
	var users, cids []string
	for i := range 1500 {
		users = append(users, fmt.Sprintf("u%d", i))
	}
	for i := range 700 {
		cids = append(cids, fmt.Sprintf("messaging:c%d", i))
	}
	if err := Send(nc, users, cids); err != nil {
		t.Fatal(err)
	}
	gotUsers, gotCIDs := map[string]bool{}, map[string]bool{}
	for len(gotUsers)+len(gotCIDs) < len(users)+len(cids) {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d users and %d channels: %v", len(gotUsers), len(gotCIDs), err)
		}
		r, err := Decode(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(r.Users) + len(r.CIDs); n > MaxItems || n == 0 {
			t.Fatalf("a message of %d items", n)
		}
		for _, u := range r.Users {
			gotUsers[u] = true
		}
		for _, c := range r.CIDs {
			gotCIDs[c] = true
		}
	}
	if len(gotUsers) != len(users) || len(gotCIDs) != len(cids) {
		t.Fatalf("got %d users, %d channels; want %d, %d", len(gotUsers), len(gotCIDs), len(users), len(cids))
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	many := `{"users":["` + strings.Repeat(`a","`, MaxItems) + `a"]}`
	for name, in := range map[string]string{
		"not json":     `{`,
		"bad user":     `{"users":["a.b"]}`,
		"wildcard":     `{"users":["*"]}`,
		"bad channel":  `{"cids":["messaging"]}`,
		"bad type":     `{"cids":["a>b:c"]}`,
		"too many ids": many,
	} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: accepted %.60s", name, in)
		}
	}
	if r, err := Decode([]byte(`{"users":["ann"],"cids":["messaging:general"]}`)); err != nil || len(r.Users) != 1 || len(r.CIDs) != 1 {
		t.Fatalf("a good request: %+v, %v", r, err)
	}
}
