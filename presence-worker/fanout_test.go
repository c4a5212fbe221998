package worker

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/subject"
)

// TestTransitionFanOutIsLinearInChannels: a transition is published once per
// presence channel of the user, each copy the same size whatever the number
// of channels. (Copies once listed every channel, which made one transition
// of a user in 2000 channels cost ~270 MB: any client could make a victim's
// transitions that expensive by creating channels holding them, I7.)
func TestTransitionFanOutIsLinearInChannels(t *testing.T) {
	h := newHarness(t)
	cids := make([]string, 2000)
	for i := range cids {
		cids[i] = fmt.Sprintf("messaging:%s%04d", strings.Repeat("x", 60), i)
	}
	h.setMemberships("vic", cids...)
	var bytes, msgs atomic.Int64
	sub, err := h.nc.Subscribe(subject.EventsAll, func(m *nats.Msg) {
		n := len(m.Data)
		for k, vs := range m.Header {
			for _, v := range vs {
				n += len(k) + len(v)
			}
		}
		bytes.Add(int64(n))
		msgs.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()
	h.publish(ev(connevent.Opened, "vic", "c1"))
	deadline := time.Now().Add(20 * time.Second)
	for msgs.Load() < int64(len(cids)+1) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if msgs.Load() != int64(len(cids)+1) {
		t.Fatalf("one transition made %d messages, want one per channel plus the user's (%d)", msgs.Load(), len(cids)+1)
	}
	if per := bytes.Load() / msgs.Load(); per > 1024 {
		t.Fatalf("each copy of one transition is %d bytes, want a small constant", per)
	}
}
