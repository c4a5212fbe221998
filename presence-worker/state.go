package worker

import (
	"maps"
	"slices"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
)

// tombstoneTTL is how long a closed connection is remembered, so an "opened"
// arriving after its "closed" is ignored (I3). Longer than any redelivery.
const tombstoneTTL = 10 * time.Minute

// epochs tells the current epoch of a gateway node (0 if unknown).
type epochs func(node string) uint64

// Event types the worker emits.
const (
	presenceChanged = "user.presence.changed"
	userUpdated     = "user.updated"
)

// apply applies one event to a user's presence state and reports whether the
// state changed. It is pure: the same event applied twice, or events applied
// in any order, leave the same connection set (I3).
//
// When the visible state flips, apply records the transition: Online follows
// and Version grows by one. The caller emits it after the write succeeds.
func apply(p *model.Presence, ev connevent.Event, epochOf epochs) (changed, transition bool) {
	before := clonePresence(*p)
	switch ev.Kind {
	case connevent.Opened:
		// The flag counts even if the connection itself is already gone:
		// the profile said so at that revision (I1, I3).
		setVisibility(p, ev)
		if _, closed := p.Closed[ev.ConnID]; closed {
			break // closed before opened: the connection is already gone
		}
		if ev.Epoch < epochOf(ev.Node) {
			break // from an earlier run of a restarted node
		}
		if _, ok := p.Conns[ev.ConnID]; !ok {
			if p.Conns == nil {
				p.Conns = map[string]model.Conn{}
			}
			p.Conns[ev.ConnID] = model.Conn{Node: ev.Node, Epoch: ev.Epoch, OpenedAt: ev.At}
		}
		touch(p, ev.At)
	case connevent.Closed:
		if _, ok := p.Closed[ev.ConnID]; !ok {
			// Active until it closed, whichever of open and close came first.
			touch(p, ev.At)
			if p.Closed == nil {
				p.Closed = map[string]time.Time{}
			}
			p.Closed[ev.ConnID] = ev.At
		}
		delete(p.Conns, ev.ConnID)
	case connevent.Active:
		// A live connection the state does not know (it was lost with the
		// presence bucket) is restored: gateways only refresh live ones.
		if _, ok := p.Conns[ev.ConnID]; !ok && p.Closed[ev.ConnID].IsZero() && ev.Epoch >= epochOf(ev.Node) {
			if p.Conns == nil {
				p.Conns = map[string]model.Conn{}
			}
			p.Conns[ev.ConnID] = model.Conn{Node: ev.Node, Epoch: ev.Epoch, OpenedAt: ev.At}
		}
		if _, ok := p.Conns[ev.ConnID]; ok {
			touch(p, ev.At)
		}
	case connevent.Visibility:
		if ev.ProfileRev > p.InvisibleRev && ev.Invisible && !p.Invisible && len(p.Conns) > 0 {
			touch(p, ev.At) // last seen as it goes dark; frozen from here
		}
		setVisibility(p, ev)
	case connevent.ProfileChanged:
		if ev.ProfileRev > p.ProfileRev {
			p.ProfileRev = ev.ProfileRev
			p.Version = nextVersion(p.Version, ev.At)
			p.LastEvent = userUpdated
			transition = true // an event to emit, if not a presence change
		}
	}
	pruneConns(p, epochOf)
	pruneTombstones(p, ev.At)
	if p.Visible() != p.Online {
		p.Online = p.Visible()
		p.Version = nextVersion(p.Version, ev.At)
		p.LastEvent = presenceChanged
		transition = true
		if !p.Online && !p.Invisible {
			touch(p, ev.At)
		}
	}
	if transition {
		// The caller stamps WrittenAt with the time of its write.
		p.PrevVersion, p.PrevAt = before.Version, writtenAt(before)
		p.LastEventAt = ev.At
	}
	return transition || !samePresence(before, *p), transition
}

// writtenAt is when p's event was written; a state written before
// WrittenAt existed has only the event's own time.
func writtenAt(p model.Presence) time.Time {
	if p.WrittenAt.IsZero() {
		return p.LastEventAt
	}
	return p.WrittenAt
}

// nextVersion numbers a user's next event: one more than the last, and at
// least the event's time in microseconds. Versions stay increasing even if
// the presence bucket is lost and a user's state starts over, so gateways
// never drop the rebuilt state's events as stale.
func nextVersion(last uint64, at time.Time) uint64 {
	return max(last+1, uint64(at.UnixMicro()))
}

// setVisibility takes the profile's invisible flag unless a newer one is known.
func setVisibility(p *model.Presence, ev connevent.Event) {
	if ev.ProfileRev > p.InvisibleRev {
		p.Invisible = ev.Invisible
		p.InvisibleRev = ev.ProfileRev
	}
}

// touch moves last_active forward; it stays frozen while the user is invisible.
func touch(p *model.Presence, at time.Time) {
	if !p.Invisible && at.After(p.LastActive) {
		p.LastActive = at
	}
}

// pruneConns drops connections of earlier runs of restarted nodes (I6).
func pruneConns(p *model.Presence, epochOf epochs) {
	for id, c := range p.Conns {
		if c.Epoch < epochOf(c.Node) {
			delete(p.Conns, id)
			if p.Closed == nil {
				p.Closed = map[string]time.Time{}
			}
			p.Closed[id] = c.OpenedAt
		}
	}
}

// maxTombstones bounds the closed connections remembered per user, so a
// client reconnecting in a tight loop cannot grow its state without end:
// past it, the oldest are forgotten first.
const maxTombstones = 256

func pruneTombstones(p *model.Presence, now time.Time) {
	for id, at := range p.Closed {
		if now.Sub(at) > tombstoneTTL {
			delete(p.Closed, id)
		}
	}
	if over := len(p.Closed) - maxTombstones; over > 0 {
		ids := slices.SortedFunc(maps.Keys(p.Closed), func(a, b string) int { return p.Closed[a].Compare(p.Closed[b]) })
		for _, id := range ids[:over] {
			delete(p.Closed, id)
		}
	}
	if len(p.Closed) == 0 {
		p.Closed = nil
	}
}

func clonePresence(p model.Presence) model.Presence {
	p.Conns = maps.Clone(p.Conns)
	p.Closed = maps.Clone(p.Closed)
	return p
}

func samePresence(a, b model.Presence) bool {
	return a.Invisible == b.Invisible && a.InvisibleRev == b.InvisibleRev && a.Online == b.Online &&
		a.Version == b.Version && a.LastEvent == b.LastEvent && a.ProfileRev == b.ProfileRev && a.LastActive.Equal(b.LastActive) &&
		a.LastEventAt.Equal(b.LastEventAt) &&
		maps.EqualFunc(a.Conns, b.Conns, func(x, y model.Conn) bool {
			return x.Node == y.Node && x.Epoch == y.Epoch && x.OpenedAt.Equal(y.OpenedAt)
		}) &&
		maps.EqualFunc(a.Closed, b.Closed, time.Time.Equal)
}
