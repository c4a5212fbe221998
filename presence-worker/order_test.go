package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// TestClosedBeforeOpenedKeepsTheInvisibleFlag: ann is online (visible) on
// connection a; she connects b with {invisible: true} (the gateway carries
// the flag only in b's opened, at profile revision 2) and b closes quickly.
// In order the worker learns the flag and takes her offline. If b's closed
// is applied before its opened (two workers, a NAK, a worker crash: the case
// I3 exists for), apply drops the late opened whole — flag included — so
// she stays online to everyone while her profile says invisible (I1), and
// the two orders leave different states (I3).
func TestClosedBeforeOpenedKeepsTheInvisibleFlag(t *testing.T) {
	invisibleOpen := opened("b", 2)
	invisibleOpen.Invisible, invisibleOpen.ProfileRev = true, 2
	a := opened("a", 0)
	a.ProfileRev = 1

	inOrder, _ := run([]connevent.Event{a, invisibleOpen, closed("b", 3)}, noEpochs)
	reordered, _ := run([]connevent.Event{a, closed("b", 3), invisibleOpen}, noEpochs)

	if inOrder.Online != reordered.Online || inOrder.Invisible != reordered.Invisible {
		t.Fatalf("in order: online=%v invisible=%v; closed before opened: online=%v invisible=%v",
			inOrder.Online, inOrder.Invisible, reordered.Online, reordered.Invisible)
	}
}

// TestClosedBeforeOpenedGivesTheSameLastActive: a short connection (open
// at 0 s, closed at 5 s) leaves last_active at 5 s when applied in order, but
// untouched (the zero time here; days old in practice) when the closed is
// applied first, since closed only touches a connection it knows (I3).
func TestClosedBeforeOpenedGivesTheSameLastActive(t *testing.T) {
	inOrder, _ := run([]connevent.Event{opened("a", 0), closed("a", 5)}, noEpochs)
	reordered, _ := run([]connevent.Event{closed("a", 5), opened("a", 0)}, noEpochs)
	if !inOrder.LastActive.Equal(reordered.LastActive) {
		t.Fatalf("last_active in order %v, closed before opened %v", inOrder.LastActive, reordered.LastActive)
	}
}

// TestAnotherWorkersRecentEventIsPublishedAgainFirst: ann's online was
// written moments ago by another worker, which may not have published it
// yet. This worker writes her offline next and publishes the online again
// before it, on one connection, so a gateway can never get the offline
// first and then drop the online as stale (I2).
func TestAnotherWorkersRecentEventIsPublishedAgainFirst(t *testing.T) {
	h := newHarness(t)
	now := time.Now().UTC()
	state := model.Presence{
		Conns:  map[string]model.Conn{"c1": {Node: "gw", Epoch: 1, OpenedAt: now}},
		Online: true, Version: 100, LastEvent: presenceChanged, LastEventAt: now, LastActive: now,
		EmittedBy: "another-worker",
	}
	b, _ := json.Marshal(state)
	if _, err := h.st.Presence.Put(context.Background(), store.Key("ann"), b); err != nil {
		t.Fatal(err)
	}
	h.publish(ev(connevent.Closed, "ann", "c1"))
	var got []string
	for len(got) < 2 {
		subj, v, online, dup := h.nextCopy()
		if subj == subject.UserEvents("ann") && !dup {
			got = append(got, fmt.Sprintf("v%d:%v", v, online))
		}
	}
	if want := "[v1:true v2:false]"; fmt.Sprint(got) != want {
		t.Fatalf("ann's subject carried %v, want %s (the other worker's online first)", got, want)
	}

	// Its own events it does not publish twice: the next transition comes alone.
	h.publish(ev(connevent.Opened, "ann", "c2"))
	if _, v, online, dup := h.nextCopy(); dup || v != 3 || !online {
		t.Fatalf("next event v%d online=%v dup=%v, want v3 online, no copy of v2", v, online, dup)
	}
}

// TestRaceWindowsCountFromTheWrite: in a backlog (a storm, closes whose
// publishing was retried) events reach the worker long after they
// happened. Two of a user's events written moments apart can still race to
// the gateways however old the connection events are, so the second must
// still name the first (Presence-Prev-Version), and the state must say when
// the first was written, for another worker's next event to publish it
// again first.
func TestRaceWindowsCountFromTheWrite(t *testing.T) {
	h := newHarness(t)
	old := time.Now().UTC().Add(-30 * time.Second)
	open := ev(connevent.Opened, "ann", "c1")
	open.At = old
	closing := ev(connevent.Closed, "ann", "c1")
	closing.At = old.Add(time.Second)
	h.publish(open)
	first := h.nextMeta(subject.UserEvents("ann"))
	h.publish(closing)
	second := h.nextMeta(subject.UserEvents("ann"))
	if second.Prev != first.Version {
		t.Fatalf("the offline names predecessor %d, want the online's version %d: they were written moments apart", second.Prev, first.Version)
	}
	p, _, err := store.Get[model.Presence](context.Background(), h.st.Presence, store.Key("ann"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(p.WrittenAt) > 10*time.Second {
		t.Fatalf("the state says its event was written at %v, not at the write", p.WrittenAt)
	}
	if !p.LastEventAt.Equal(closing.At) {
		t.Fatalf("the state's event time is %v, want the close's own %v (Presence-At)", p.LastEventAt, closing.At)
	}
	if !second.At.Equal(closing.At) {
		t.Fatalf("the offline's Presence-At is %v, want the close's time %v", second.At, closing.At)
	}
}

// nextMeta returns the routing headers of the next event on subj.
func (h *harness) nextMeta(subj string) event.Meta {
	h.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case msg := <-h.events:
			if msg.Subject != subj {
				continue
			}
			m, ok := event.ReadMeta(msg)
			if !ok {
				h.t.Fatalf("event without routing headers on %s", msg.Subject)
			}
			return m
		case <-timeout:
			h.t.Fatalf("no event on %s within 5s", subj)
		}
	}
}
