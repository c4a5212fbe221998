package worker

import (
	"testing"

	"github.com/presencehq/presence/pkg/connevent"
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
