package worker

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/resync"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// expectCopy reads until a copy of an event already read arrives on subj,
// and returns its rank and online value.
func (h *harness) expectCopy(subj string) (uint64, bool) {
	h.t.Helper()
	for {
		s, v, online, dup := h.nextCopy()
		if dup && s == subj {
			return v, online
		}
	}
}

// TestResyncRepublishesUsersAndChannelMembers: a gateway asking for a user
// and a channel gets the current event of the user and of every member
// again, at the version it already had (gateways drop it if they have it).
func TestResyncRepublishesUsersAndChannelMembers(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Opened, "ann", "a1"))
	h.publish(ev(connevent.Opened, "bob", "b1"))
	h.next()
	h.next()
	ch := model.Channel{Type: "messaging", ID: "general", Members: []model.Member{{UserID: "bob"}}}
	b, _ := json.Marshal(ch)
	if _, err := h.st.Channels.Put(context.Background(), store.ChannelKey("messaging", "general"), b); err != nil {
		t.Fatal(err)
	}
	if err := resync.Send(h.nc, []string{"ann"}, []string{"messaging:general"}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "bob"} {
		if v, online := h.expectCopy(subject.UserEvents(u)); v != 1 || !online {
			t.Fatalf("%s: copy of v%d online=%v, want v1 online", u, v, online)
		}
	}
}

// TestRecentEventsArePublishedAgainAfterAReconnect: the worker's NATS
// connection drops (the server kicks it, as a dying server would); what it
// published just before may be lost, so once reconnected it publishes its
// recent users' current events again.
func TestRecentEventsArePublishedAgainAfterAReconnect(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Opened, "cat", "c1"))
	h.next()
	cid, err := h.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ns.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	if v, online := h.expectCopy(subject.UserEvents("cat")); v != 1 || !online {
		t.Fatalf("copy of v%d online=%v, want v1 online", v, online)
	}
}
