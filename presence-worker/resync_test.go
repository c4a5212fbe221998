package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/resync"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// expectCopies reads until a copy of an event already read arrived on each
// of subjs, in any order, and returns their ranks and online values.
func (h *harness) expectCopies(subjs ...string) map[string]string {
	h.t.Helper()
	want := map[string]bool{}
	for _, s := range subjs {
		want[s] = true
	}
	got := map[string]string{}
	for len(got) < len(want) {
		s, v, online, dup := h.nextCopy()
		if dup && want[s] {
			got[s] = fmt.Sprintf("v%d:%v", v, online)
		}
	}
	return got
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
	ch := model.Channel{Type: "messaging", ID: "general"}
	b, _ := json.Marshal(ch)
	if _, err := h.st.Channels.Put(context.Background(), store.ChannelKey("messaging", "general"), b); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(model.Member{UserID: "bob"})
	if _, err := h.st.Members.Put(context.Background(), store.MemberKey("messaging", "general", "bob"), b); err != nil {
		t.Fatal(err)
	}
	if err := resync.Send(h.nc, []string{"ann"}, []string{"messaging:general"}); err != nil {
		t.Fatal(err)
	}
	got := h.expectCopies(subject.UserEvents("ann"), subject.UserEvents("bob"))
	for _, u := range []string{"ann", "bob"} {
		if c := got[subject.UserEvents(u)]; c != "v1:true" {
			t.Fatalf("%s: copy %s, want v1:true", u, c)
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
	if c := h.expectCopies(subject.UserEvents("cat"))[subject.UserEvents("cat")]; c != "v1:true" {
		t.Fatalf("copy %s, want v1:true", c)
	}
}
