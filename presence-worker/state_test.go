package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func opened(conn string, sec int) connevent.Event {
	return connevent.Event{Kind: connevent.Opened, User: "ann", ConnID: conn, Node: "gw", Epoch: 1, At: t0.Add(time.Duration(sec) * time.Second)}
}

func closed(conn string, sec int) connevent.Event {
	return connevent.Event{Kind: connevent.Closed, User: "ann", ConnID: conn, Node: "gw", Epoch: 1, At: t0.Add(time.Duration(sec) * time.Second)}
}

func visibility(invisible bool, rev uint64, sec int) connevent.Event {
	return connevent.Event{Kind: connevent.Visibility, User: "ann", Invisible: invisible, ProfileRev: rev, At: t0.Add(time.Duration(sec) * time.Second)}
}

func noEpochs(string) uint64 { return 0 }

// run applies events in order and returns the final state and the online
// value of every transition. Every transition must have a higher version
// than the one before.
func run(events []connevent.Event, epochOf epochs) (model.Presence, []bool) {
	var p model.Presence
	var transitions []bool
	for _, ev := range events {
		before := p.Version
		if _, t := apply(&p, ev, epochOf); t {
			transitions = append(transitions, p.Online)
			if p.Version <= before {
				panic(fmt.Sprintf("version went from %d to %d on a transition", before, p.Version))
			}
		}
	}
	return p, transitions
}

func TestApplyInvariants(t *testing.T) {
	tests := []struct {
		name        string
		events      []connevent.Event
		online      bool
		transitions []bool
	}{
		{"one connection opening makes the user online", []connevent.Event{opened("a", 0)}, true, []bool{true}},
		{"open then close is online then offline", []connevent.Event{opened("a", 0), closed("a", 5)}, false, []bool{true, false}},
		{"second connection closing keeps user online", []connevent.Event{opened("a", 0), opened("b", 1), closed("b", 2)}, true, []bool{true}},
		{"both connections closing makes the user offline once", []connevent.Event{opened("a", 0), opened("b", 1), closed("a", 2), closed("b", 3)}, false, []bool{true, false}},
		{"close before open leaves the user offline", []connevent.Event{closed("a", 5), opened("a", 0)}, false, nil},
		{"duplicate open is applied once", []connevent.Event{opened("a", 0), opened("a", 0), closed("a", 1), closed("a", 1)}, false, []bool{true, false}},
		{"duplicate close after reopen of another connection keeps online", []connevent.Event{opened("a", 0), closed("a", 1), opened("b", 2), closed("a", 1)}, true, []bool{true, false, true}},
		{"connecting invisible is no transition", []connevent.Event{visibility(true, 1, 0), opened("a", 1)}, false, nil},
		{"going invisible while connected is an offline transition", []connevent.Event{opened("a", 0), visibility(true, 2, 1)}, false, []bool{true, false}},
		{"invisible round trip is offline then online", []connevent.Event{opened("a", 0), visibility(true, 2, 1), visibility(false, 3, 2)}, true, []bool{true, false, true}},
		{"a stale visibility change is ignored", []connevent.Event{opened("a", 0), visibility(false, 3, 1), visibility(true, 2, 2)}, true, []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, transitions := run(tt.events, noEpochs)
			if p.Online != tt.online || p.Visible() != tt.online {
				t.Fatalf("online = %v (visible %v), want %v", p.Online, p.Visible(), tt.online)
			}
			if fmt.Sprint(transitions) != fmt.Sprint(tt.transitions) {
				t.Fatalf("transitions = %v, want %v", transitions, tt.transitions)
			}
			if (p.Version == 0) != (len(tt.transitions) == 0) {
				t.Fatalf("version = %d after %d transitions", p.Version, len(tt.transitions))
			}
		})
	}
}

// TestApplyIdempotent checks I3: every event applied twice in a row gives the
// same state as once.
func TestApplyIdempotent(t *testing.T) {
	events := []connevent.Event{opened("a", 0), opened("b", 1), visibility(true, 5, 2), closed("a", 3), visibility(false, 6, 4), closed("b", 5)}
	once, tOnce := run(events, noEpochs)
	var twice []connevent.Event
	for _, ev := range events {
		twice = append(twice, ev, ev)
	}
	got, tTwice := run(twice, noEpochs)
	if !samePresence(once, got) || fmt.Sprint(tOnce) != fmt.Sprint(tTwice) {
		t.Fatalf("twice = %+v %v, once = %+v %v", got, tTwice, once, tOnce)
	}
}

// TestApplyOrderIndependent checks I3: the connection set does not depend on
// the order events arrive in.
func TestApplyOrderIndependent(t *testing.T) {
	events := []connevent.Event{opened("a", 0), opened("b", 1), closed("a", 2), opened("c", 3), closed("c", 4)}
	want, _ := run(events, noEpochs)
	reversed := make([]connevent.Event, len(events))
	for i, ev := range events {
		reversed[len(events)-1-i] = ev
	}
	got, _ := run(reversed, noEpochs)
	if len(got.Conns) != len(want.Conns) || got.Online != want.Online {
		t.Fatalf("reversed order: conns %v online %v, in order: conns %v online %v", got.Conns, got.Online, want.Conns, want.Online)
	}
	if _, ok := got.Conns["b"]; !ok {
		t.Fatalf("connection b lost: %v", got.Conns)
	}
}

func TestLastActive(t *testing.T) {
	p, _ := run([]connevent.Event{opened("a", 0), {Kind: connevent.Active, User: "ann", ConnID: "a", Node: "gw", Epoch: 1, At: t0.Add(15 * time.Minute)}}, noEpochs)
	if !p.LastActive.Equal(t0.Add(15 * time.Minute)) {
		t.Fatalf("active refresh: last_active = %v", p.LastActive)
	}
	p, _ = run([]connevent.Event{opened("a", 0), visibility(true, 2, 10), {Kind: connevent.Active, User: "ann", ConnID: "a", Node: "gw", Epoch: 1, At: t0.Add(time.Hour)}, closed("a", 7200)}, noEpochs)
	if !p.LastActive.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("invisible user's last_active moved: %v, want frozen at %v", p.LastActive, t0.Add(10*time.Second))
	}
	p, _ = run([]connevent.Event{opened("a", 0), closed("a", 30)}, noEpochs)
	if !p.LastActive.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("disconnect: last_active = %v, want the close time", p.LastActive)
	}
}

func TestRestartedNodeDropsOldConnections(t *testing.T) {
	epoch := uint64(1)
	epochOf := func(string) uint64 { return epoch }
	var p model.Presence
	apply(&p, opened("a", 0), epochOf)
	epoch = 2 // the node restarted
	_, transition := apply(&p, connevent.Event{User: "ann", At: t0.Add(time.Second)}, epochOf)
	if !transition || p.Online || len(p.Conns) != 0 {
		t.Fatalf("after restart: transition %v online %v conns %v; want offline", transition, p.Online, p.Conns)
	}
	_, transition = apply(&p, opened("late", 2), epochOf) // epoch 1: from the dead run
	if transition || p.Online {
		t.Fatal("an opening from the node's earlier run brought the user online")
	}
}
