package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

type harness struct {
	t      *testing.T
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store.Store
	events chan *nats.Msg
	// versions seen per user, in order (see rank)
	versions map[string][]uint64
	// copies already read, by subject and version
	copies map[string]bool
	w      *Worker
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, Config{})
}

func newHarnessWith(t *testing.T, cfg Config) *harness {
	t.Helper()
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	st, err := store.Setup(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ns: ns, nc: nc, js: js, st: st, events: make(chan *nats.Msg, 1000)}
	if _, err := nc.ChanSubscribe(subject.EventsAll, h.events); err != nil {
		t.Fatal(err)
	}
	cfg.Shards = 4
	if cfg.LeaseCheck == 0 {
		cfg.LeaseCheck = 50 * time.Millisecond
	}
	w, err := New(ctx, cfg, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	h.w = w
	return h
}

func (h *harness) publish(ev connevent.Event) {
	h.t.Helper()
	subj := subject.ConnEvent(ev.Node, ev.User)
	switch ev.Kind {
	case connevent.Visibility, connevent.ProfileChanged:
		subj = subject.UserCommand(ev.User)
	case connevent.NodeStarted:
		subj = subject.NodeEvent(ev.Node)
	}
	// No Msg-Id: the test wants duplicates to reach the worker.
	if _, err := h.js.Publish(context.Background(), subj, ev.Encode()); err != nil {
		h.t.Fatal(err)
	}
}

// next returns the next event's subject, version and online value.
func (h *harness) next() (string, uint64, bool) {
	h.t.Helper()
	for {
		subj, v, online, dup := h.nextCopy()
		if !dup {
			return subj, v, online
		}
	}
}

// nextCopy reads the next message; dup reports a copy of an event already
// read on the same subject (workers publish an event's predecessor again
// with it; gateways drop such copies the same way).
func (h *harness) nextCopy() (string, uint64, bool, bool) {
	h.t.Helper()
	select {
	case msg := <-h.events:
		m, ok := event.ReadMeta(msg)
		if !ok {
			h.t.Fatalf("event without routing headers on %s", msg.Subject)
		}
		if h.copies == nil {
			h.copies = map[string]bool{}
		}
		var ev event.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			h.t.Fatal(err)
		}
		if ev.Type != event.PresenceChanged && ev.Type != event.UserUpdated {
			h.t.Fatalf("event type %q, want %q", ev.Type, event.PresenceChanged)
		}
		if _, leaked := ev.User["invisible"]; leaked {
			h.t.Fatalf("event shows the invisible flag: %v", ev.User)
		}
		key := fmt.Sprintf("%s/%d", msg.Subject, m.Version)
		dup := h.copies[key]
		h.copies[key] = true
		return msg.Subject, h.rank(m.User, m.Version), ev.User["online"].(bool), dup
	case <-time.After(5 * time.Second):
		h.t.Fatal("no presence event within 5s")
	}
	return "", 0, false, false
}

// rank turns a user's event versions into 1, 2, 3… in the order they are
// first seen, failing if a version goes backwards. Versions are
// time-based; their order is what watchers rely on.
func (h *harness) rank(user string, v uint64) uint64 {
	h.t.Helper()
	if h.versions == nil {
		h.versions = map[string][]uint64{}
	}
	seen := h.versions[user]
	for i, x := range seen {
		if x == v {
			return uint64(i + 1)
		}
	}
	if len(seen) > 0 && v < seen[len(seen)-1] {
		h.t.Fatalf("%s: version %d after %d: versions must grow", user, v, seen[len(seen)-1])
	}
	h.versions[user] = append(seen, v)
	return uint64(len(seen) + 1)
}

func (h *harness) setMemberships(user string, cids ...string) {
	b, _ := json.Marshal(model.Memberships{CIDs: cids})
	if _, err := h.st.Memberships.Put(context.Background(), store.Key(user), b); err != nil {
		h.t.Fatal(err)
	}
}

func ev(kind connevent.Kind, user, conn string) connevent.Event {
	return connevent.Event{Kind: kind, User: user, ConnID: conn, Node: "gw", Epoch: 1, At: time.Now().UTC()}
}

func TestTransitionsGoToUserAndChannelSubjects(t *testing.T) {
	h := newHarness(t)
	h.setMemberships("ann", "messaging:a", "messaging:b", "team:c")
	h.publish(ev(connevent.Opened, "ann", "c1"))
	got := map[string]bool{}
	for range 4 {
		subj, v, online := h.next()
		if v != 1 || !online {
			t.Fatalf("%s: version %d online %v, want 1 true", subj, v, online)
		}
		got[subj] = true
	}
	for _, want := range []string{subject.UserEvents("ann"), subject.ChannelEvents("messaging", "a"), subject.ChannelEvents("messaging", "b"), subject.ChannelEvents("team", "c")} {
		if !got[want] {
			t.Fatalf("no event on %s; got %v", want, got)
		}
	}
}

func TestDuplicateAndReorderedEventsEmitEachTransitionOnce(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Closed, "bob", "early")) // closed before opened
	h.publish(ev(connevent.Opened, "bob", "early"))
	h.publish(ev(connevent.Opened, "bob", "c1"))
	h.publish(ev(connevent.Opened, "bob", "c1")) // duplicate
	h.publish(ev(connevent.Opened, "bob", "c2"))
	h.publish(ev(connevent.Closed, "bob", "c1"))
	h.publish(ev(connevent.Closed, "bob", "c1")) // duplicate
	h.publish(ev(connevent.Closed, "bob", "c2"))
	var seq []string
	for range 2 {
		_, v, online := h.next()
		seq = append(seq, fmt.Sprintf("v%d:%v", v, online))
	}
	if fmt.Sprint(seq) != "[v1:true v2:false]" {
		t.Fatalf("events = %v, want [v1:true v2:false]", seq)
	}
	// A marker transition of another user must be the very next event.
	h.publish(ev(connevent.Opened, "marker", "m1"))
	if subj, _, _ := h.next(); subj != subject.UserEvents("marker") {
		t.Fatalf("extra event on %s before the marker", subj)
	}
}

func TestInvisibleRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Opened, "cat", "c1"))
	if _, _, online := h.next(); !online {
		t.Fatal("want online on connect")
	}
	vis := ev(connevent.Visibility, "cat", "")
	vis.Invisible, vis.ProfileRev = true, 10
	h.publish(vis)
	if _, v, online := h.next(); online || v != 2 {
		t.Fatalf("going invisible: v%d online %v, want v2 offline", v, online)
	}
	vis.Invisible, vis.ProfileRev = false, 11
	h.publish(vis)
	if _, v, online := h.next(); !online || v != 3 {
		t.Fatalf("going visible: v%d online %v, want v3 online", v, online)
	}
	p, _, err := store.Get[model.Presence](context.Background(), h.st.Presence, "cat")
	if err != nil || p.Invisible || len(p.Conns) != 1 {
		t.Fatalf("stored state %+v, %v", p, err)
	}
}

func TestRestartedNodeTakesItsUsersOfflineAtOnce(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Opened, "dan", "c1"))
	h.publish(ev(connevent.Opened, "eve", "c2"))
	h.next()
	h.next()
	h.publish(connevent.Event{Kind: connevent.NodeStarted, Node: "gw", Epoch: 2, At: time.Now().UTC()})
	offline := map[string]bool{}
	for range 2 {
		subj, _, online := h.next()
		if online {
			t.Fatalf("%s went online after its node restarted", subj)
		}
		offline[subj] = true
	}
	if !offline[subject.UserEvents("dan")] || !offline[subject.UserEvents("eve")] {
		t.Fatalf("offline events on %v, want dan and eve", offline)
	}
}

// TestProfileUpdatesShareTheUsersSequence: user.updated is numbered in the
// same sequence as presence changes, so a watcher can order the two (I2).
func TestProfileUpdatesShareTheUsersSequence(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Opened, "ann", "a1"))
	h.next()
	profile := connevent.Event{Kind: connevent.ProfileChanged, User: "ann", ProfileRev: 7, At: time.Now().UTC()}
	h.publish(profile)
	h.publish(profile) // duplicate: one event
	h.publish(ev(connevent.Closed, "ann", "a1"))
	var got []string
	seen := map[uint64]bool{1: true}
	for len(got) < 2 {
		select {
		case msg := <-h.events:
			m, _ := event.ReadMeta(msg)
			r := h.rank(m.User, m.Version)
			if seen[r] {
				continue // the predecessor published again with its successor
			}
			seen[r] = true
			var e event.Event
			_ = json.Unmarshal(msg.Data, &e)
			got = append(got, fmt.Sprintf("v%d:%s:%v", r, e.Type, e.User["online"]))
		case <-time.After(5 * time.Second):
			t.Fatalf("got %v, want two more events", got)
		}
	}
	if want := "[v2:user.updated:true v3:user.presence.changed:false]"; fmt.Sprint(got) != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}

// TestAFailedEmitGoesOutBeforeTheUsersNextTransition: the offline this
// worker wrote must reach watchers even though emitting it failed at
// first and the user's reconnect is already queued behind it; otherwise
// watchers read "online" twice in a row.
func TestAFailedEmitGoesOutBeforeTheUsersNextTransition(t *testing.T) {
	h := newHarness(t)
	h.publish(ev(connevent.Opened, "ann", "c1"))
	if _, v, online := h.next(); v != 1 || !online {
		t.Fatalf("first event v%d online=%v, want v1 online", v, online)
	}
	var failed atomic.Int32
	fault := func(user string) error {
		if failed.Add(1) <= 3 {
			return errors.New("injected: the profile read timed out")
		}
		return nil
	}
	h.w.emitFault.Store(&fault)
	h.publish(ev(connevent.Closed, "ann", "c1"))
	h.publish(ev(connevent.Opened, "ann", "c2"))
	var seq []string
	for range 2 {
		_, v, online := h.next()
		seq = append(seq, fmt.Sprintf("v%d:%v", v, online))
	}
	if fmt.Sprint(seq) != "[v2:false v3:true]" {
		t.Fatalf("events after the failed emits = %v, want [v2:false v3:true]", seq)
	}
	if n := failed.Load(); n < 4 {
		t.Fatalf("the fault ran %d times, want the 3 failures and a success", n)
	}
}
