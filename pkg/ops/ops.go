// Package ops serves what operators and orchestrators read from every
// Presence process: /metrics (Prometheus), /healthz (the process is alive)
// and /readyz (it should get traffic: connected to NATS, caught up, not
// draining). Each service defines its own metrics on the registry it is
// given; a process running several services (the all-in-one) gives them one
// registry and serves it once.
package ops

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry holding the Go runtime's and the process's
// metrics (goroutines, GC, memory, CPU, open files).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Readiness reports why a service should not get traffic yet, or "" when it
// should.
type Readiness func() string

// All is ready when every one of checks is; otherwise it gives the reasons
// of those that are not.
func All(checks ...Readiness) Readiness {
	return func() string {
		var reasons []string
		for _, c := range checks {
			if r := c(); r != "" {
				reasons = append(reasons, r)
			}
		}
		return strings.Join(reasons, "; ")
	}
}

// Handle adds /metrics (from g), /healthz and /readyz (from ready) to mux.
func Handle(mux *http.ServeMux, g prometheus.Gatherer, ready Readiness) {
	mux.Handle("/metrics", Metrics(g))
	mux.HandleFunc("/healthz", Healthz)
	mux.Handle("/readyz", Readyz(ready))
}

// Metrics serves g in Prometheus' text format. A failing collector is
// reported on the side and the rest still served: half the numbers beat
// none while something is wrong.
func Metrics(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4})
}

// Healthz answers 200 while the process can answer at all.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// Readyz answers 200 "ok" when ready, else 503 with the reason.
func Readyz(ready Readiness) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if reason := ready(); reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		Healthz(w, nil)
	})
}

// LatencyBuckets are the histogram buckets of every latency Presence
// measures, in seconds: from half a millisecond (a quiet node) to 10 s (a
// reconnect storm's backlog).
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
