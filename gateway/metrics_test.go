package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/presencehq/presence/gateway/socket"
)

func TestDisconnectsAreCountedByWhyTheyEnded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		code     socket.StatusCode
		byClient bool
		reason   string
	}{
		{"the client closed", socket.StatusNormal, true, "client"},
		{"the client went away", socket.StatusAbnormal, true, "client"},
		{"the client closed with a code of ours", socket.StatusTryAgainLater, true, "client"},
		{"too slow to keep up", socket.StatusTryAgainLater, false, "slow_consumer"},
		{"a frame flood", socket.StatusPolicyViolation, false, "flood"},
		{"a message too big", socket.StatusTooBig, false, "oversize"},
		{"pings unanswered or idle", socket.StatusGoingAway, false, "timeout"},
		{"the node drained", socket.StatusServiceRestart, false, "drain"},
		{"a protocol error", socket.StatusProtocolError, false, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMetrics(prometheus.NewRegistry(), &Gateway{})
			m.disconnected(tc.code, tc.byClient)
			if got := testutil.ToFloat64(m.disconnects.WithLabelValues(tc.reason)); got != 1 {
				t.Fatalf("disconnects{reason=%q} = %v, want 1", tc.reason, got)
			}
			if got := testutil.CollectAndCount(m.disconnects); got != 7 {
				t.Fatalf("%d disconnect reasons, want the 7 documented ones", got)
			}
			slow := testutil.ToFloat64(m.slowConsumers.WithLabelValues("websocket"))
			if want := map[bool]float64{true: 1, false: 0}[tc.reason == "slow_consumer"]; slow != want {
				t.Fatalf("slow_consumers{kind=websocket} = %v, want %v", slow, want)
			}
		})
	}
}
