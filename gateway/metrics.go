package gateway

import (
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/presencehq/presence/gateway/socket"
	"github.com/presencehq/presence/pkg/ops"
)

// metrics are the gateway's numbers on /metrics (docs/metrics.md).
type metrics struct {
	connects                    *prometheus.CounterVec
	connectsOK, connectsRefused prometheus.Counter
	disconnects                 *prometheus.CounterVec
	relayed                     prometheus.Counter
	relayLatency                prometheus.Histogram
	slowConsumers               *prometheus.CounterVec
	leaseRenewals               *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, g *Gateway) *metrics {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "presence_gateway_connections", Help: "Open WebSocket connections.",
	}, func() float64 { return float64(g.ConnCount()) })
	m := &metrics{
		connects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_gateway_connects_total", Help: "Connect attempts, by result: ok, or rejected (bad token or input, a limit, draining).",
		}, []string{"result"}),
		disconnects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_gateway_disconnects_total", Help: "Connections ended, by reason: client, slow_consumer, flood, oversize, timeout, drain or other.",
		}, []string{"reason"}),
		relayed: f.NewCounter(prometheus.CounterOpts{
			Name: "presence_gateway_events_relayed_total", Help: "Events queued on watchers' sockets (one per socket).",
		}),
		relayLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name: "presence_gateway_relay_latency_seconds", Help: "From the connect or close that made a presence transition (as its gateway saw it) to the event queued on this node's watchers.",
			Buckets: ops.LatencyBuckets,
		}),
		slowConsumers: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_gateway_slow_consumers_total", Help: "Slow consumers: websocket, a socket closed for not reading its events; nats, this node falling behind its NATS subscriptions.",
		}, []string{"kind"}),
		leaseRenewals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_gateway_lease_renewals_total", Help: "Renewals of the node's lease, by result: ok or error.",
		}, []string{"result"}),
	}
	m.connectsOK, m.connectsRefused = m.connects.WithLabelValues("ok"), m.connects.WithLabelValues("rejected")
	for _, r := range []string{"client", "slow_consumer", "flood", "oversize", "timeout", "drain", "other"} {
		m.disconnects.WithLabelValues(r)
	}
	for _, k := range []string{"websocket", "nats"} {
		m.slowConsumers.WithLabelValues(k)
	}
	for _, r := range []string{"ok", "error"} {
		m.leaseRenewals.WithLabelValues(r)
	}
	return m
}

// disconnected counts a connection's end by why it ended.
func (m *metrics) disconnected(code socket.StatusCode, byClient bool) {
	reason := "other"
	switch {
	case byClient:
		reason = "client"
	case code == socket.StatusTryAgainLater:
		reason = "slow_consumer"
		m.slowConsumers.WithLabelValues("websocket").Inc()
	case code == socket.StatusPolicyViolation:
		reason = "flood"
	case code == socket.StatusTooBig:
		reason = "oversize"
	case code == socket.StatusGoingAway:
		reason = "timeout"
	case code == socket.StatusServiceRestart:
		reason = "drain"
	}
	m.disconnects.WithLabelValues(reason).Inc()
}

// renewed counts a lease renewal by its result.
func (m *metrics) renewed(err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.leaseRenewals.WithLabelValues(result).Inc()
}

// countNATSSlowConsumers counts nc's slow-consumer errors (messages NATS
// dropped because this node did not take them fast enough), keeping nc's
// error handler.
func (m *metrics) countNATSSlowConsumers(nc *nats.Conn) {
	next := nc.ErrorHandler()
	slow := m.slowConsumers.WithLabelValues("nats")
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			slow.Inc()
		}
		if next != nil {
			next(c, sub, err)
		}
	})
}
