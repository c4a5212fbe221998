package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// TestConnectDetailsCannotGrowAProfilePastTheLimit: connect-time details
// are merged into the stored profile, so each connect could add more custom
// fields; the merged profile is bounded like the api bounds it (I7), and a
// connect that would pass the bound gets a clear input error.
func TestConnectDetailsCannotGrowAProfilePastTheLimit(t *testing.T) {
	h := newHarness(t)
	accepted := 0
	for i := 0; i < 4; i++ {
		details := map[string]any{"id": "gro", fmt.Sprintf("blob%d", i): strings.Repeat("x", 2000)}
		ws, first := h.dial("gro", userToken(t, "gro"), testKey, details)
		ws.CloseNow()
		if first["type"] == "connection.ok" {
			accepted++
			continue
		}
		if e, _ := first["error"].(map[string]any); e == nil || e["code"] != float64(4) {
			t.Fatalf("connect %d: %v, want connection.ok or input error code 4", i, first)
		}
	}
	if accepted == 0 || accepted == 4 {
		t.Fatalf("%d of 4 growing connects accepted, want the first ones until the limit", accepted)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := h.gw.st.Users.Get(ctx, store.Key("gro"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.Value()); n > model.MaxUserBytes {
		t.Fatalf("stored profile is %d bytes, over the %d-byte user limit", n, model.MaxUserBytes)
	}
}
