package gateway

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/pkg/event"
)

func TestAClientFloodingFramesIsClosedWith1008(t *testing.T) {
	h := newHarness(t) // the default frame rate: 20/s, bursts of 50
	ws, _ := h.dial("ann", userToken(t, "ann"), testKey, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		hc := []byte(`[{"type":"health.check","client_id":"x"}]`)
		for range 10000 {
			if ws.Write(ctx, websocket.MessageText, hc) != nil {
				return // closed under it
			}
		}
	})
	code := waitClose(t, ws, 5*time.Second)
	wg.Wait()
	if code != websocket.StatusPolicyViolation {
		t.Fatalf("a client flooding health checks was closed with %v, want 1008", code)
	}
}

// TestWhatIsNotAHealthCheckIsIgnored: clients send health checks only;
// anything else gets no answer and does not close the socket.
func TestWhatIsNotAHealthCheckIsIgnored(t *testing.T) {
	h := newHarness(t)
	ws, _ := h.dial("ann", userToken(t, "ann"), testKey, nil)
	if hc := readFrame(t, ws); hc["type"] != event.HealthCheck {
		t.Fatalf("second frame %v, want the health check after connection.ok", hc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, msg := range []string{
		`{"type":"message.new","text":"hi"}`, `[{"type":"typing.start"}]`, `[]`, `not json`, `{"type":"health.check"`,
		`[{"type":"health.check","client_id":"x"}]`,
	} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if f := readFrame(t, ws); f["type"] != event.HealthCheck || f["connection_id"] == nil {
		t.Fatalf("first answer %v, want the health check's (nothing for what came before it)", f)
	}
}
