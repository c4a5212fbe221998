package worker

import (
	"context"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// TestCloseRightAfterAPurgeIsAnnounced: the presence bucket is emptied
// (sentinel and all) and a user closes at once, before the periodic check
// (an hour away here) could notice. The close lands on an empty state, so it
// is no transition; yet watchers still believe the lost state said online.
// The worker checks the sentinel when an event finds no state and makes no
// transition, learns of the loss and announces the user offline.
func TestCloseRightAfterAPurgeIsAnnounced(t *testing.T) {
	h := newHarnessWith(t, Config{LeaseCheck: time.Hour})
	h.publish(ev(connevent.Opened, "ann", "c1"))
	if _, _, online := h.next(); !online {
		t.Fatal("want ann online")
	}
	st, err := h.js.Stream(context.Background(), "KV_"+store.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.publish(ev(connevent.Closed, "ann", "c1"))
	subj, _, online := h.next()
	if subj != subject.UserEvents("ann") || online {
		t.Fatalf("after the purge and close: event on %s online=%v, want ann offline", subj, online)
	}
}
