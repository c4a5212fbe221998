package worker

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
)

// TestTombstonesAreBounded: a client reconnecting 30 times a second for 10
// minutes leaves 18000 closed connections inside the tombstone window; the
// state keeps only the newest, so the user's record stays small (I7).
func TestTombstonesAreBounded(t *testing.T) {
	const n = 18000
	p := model.Presence{Closed: map[string]time.Time{}}
	for i := 0; i < n; i++ {
		p.Closed[fmt.Sprintf("gateway-1~dn4ec6e7337z~%x", i)] = t0.Add(time.Duration(i) * time.Second / 30)
	}
	at := t0.Add(n * time.Second / 30)
	id := "gateway-1~dn4ec6e7337z~last"
	apply(&p, connevent.Event{Kind: connevent.Opened, User: "ann", ConnID: id, Node: "gateway-1", Epoch: 1, At: at}, noEpochs)
	apply(&p, connevent.Event{Kind: connevent.Closed, User: "ann", ConnID: id, Node: "gateway-1", Epoch: 1, At: at.Add(time.Millisecond)}, noEpochs)
	if len(p.Closed) != maxTombstones {
		t.Fatalf("kept %d tombstones, want the newest %d", len(p.Closed), maxTombstones)
	}
	if _, ok := p.Closed[id]; !ok {
		t.Fatal("the newest close was dropped")
	}
	if b, _ := json.Marshal(p); len(b) > 64<<10 {
		t.Fatalf("one user's presence record is %d bytes", len(b))
	}
}
