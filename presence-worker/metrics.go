package worker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/ops"
)

// metrics are the worker's numbers on /metrics (docs/metrics.md).
type metrics struct {
	events       *prometheus.CounterVec
	transitions  *prometheus.CounterVec
	online       prometheus.Counter
	offline      prometheus.Counter
	redeliveries prometheus.Counter
	expiries     prometheus.Counter
	apply        prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, w *Worker) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_worker_events_total", Help: "Input events applied, by type (opened, closed, active, visibility, profile_changed, node_started, node_expired).",
		}, []string{"type"}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_worker_transitions_total", Help: "Presence transitions written, by the state reached: online or offline.",
		}, []string{"to"}),
		redeliveries: f.NewCounter(prometheus.CounterOpts{
			Name: "presence_worker_redeliveries_total", Help: "Input events delivered again (a worker died holding them, or applying them failed).",
		}),
		expiries: f.NewCounter(prometheus.CounterOpts{
			Name: "presence_worker_lease_expiries_total", Help: "Gateway leases this worker marked expired (the gateway went silent; its users go offline).",
		}),
		apply: f.NewHistogram(prometheus.HistogramOpts{
			Name: "presence_worker_apply_seconds", Help: "Time to apply one input event: its compare-and-set and the event it emits.",
			Buckets: ops.LatencyBuckets,
		}),
	}
	for _, k := range []connevent.Kind{connevent.Opened, connevent.Closed, connevent.Active, connevent.Visibility, connevent.ProfileChanged, connevent.NodeStarted, connevent.NodeExpired} {
		m.events.WithLabelValues(string(k))
	}
	m.online, m.offline = m.transitions.WithLabelValues("online"), m.transitions.WithLabelValues("offline")
	// The state cache sees every compare-and-set of the presence bucket.
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "presence_worker_kv_conflicts_total", Help: "Compare-and-sets of presence state that failed because the key had moved on (another worker, or a stale cached copy); each was tried again.",
	}, func() float64 { return float64(w.states.Conflicts()) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "presence_worker_kv_retries_total", Help: "Presence state updates tried again: after a conflict, or when the cached copy turned out stale.",
	}, func() float64 { return float64(w.states.Retries()) })
	reg.MustRegister(&consumerCollector{w: w})
	return m
}

// consumerCollector reads the workers' consumer at each scrape: how many
// input events wait for a worker, and how many are out and not yet acked.
// It reads JetStream's numbers, so every worker reports the same ones.
type consumerCollector struct{ w *Worker }

var (
	pendingDesc = prometheus.NewDesc("presence_worker_consumer_pending",
		"Input events waiting for a worker (the workers' JetStream consumer, all workers together).", nil, nil)
	ackPendingDesc = prometheus.NewDesc("presence_worker_consumer_ack_pending",
		"Input events handed to workers and not yet acknowledged (all workers together).", nil, nil)
)

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- ackPendingDesc
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	cons := c.w.consumer.Load()
	if cons == nil {
		return // not yet created
	}
	ctx, cancel := context.WithTimeout(c.w.ctx, 2*time.Second)
	defer cancel()
	info, err := (*cons).Info(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pendingDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(info.NumPending))
	ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(info.NumAckPending))
}

// applied counts one input event applied in took.
func (m *metrics) applied(kind connevent.Kind, took time.Duration) {
	m.events.WithLabelValues(string(kind)).Inc()
	m.apply.Observe(took.Seconds())
}
