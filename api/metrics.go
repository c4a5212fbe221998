package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/presencehq/presence/pkg/ops"
)

// metrics are the api node's numbers on /metrics (docs/metrics.md).
type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	rateLimited *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_api_requests_total", Help: "HTTP requests answered, by route (the pattern, e.g. /channels/:type/:id/query), method and status code.",
		}, []string{"route", "method", "code"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "presence_api_request_duration_seconds", Help: "Time to answer an HTTP request, by route and method.",
			Buckets: ops.LatencyBuckets,
		}, []string{"route", "method"}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_api_rate_limited_total", Help: "Requests refused with 429, by the limit they met: user (per user and endpoint) or api_key.",
		}, []string{"limit"}),
	}
	for _, l := range []string{"user", "api_key"} {
		m.rateLimited.WithLabelValues(l)
	}
	return m
}

// observe counts every request by route, method and the status it was
// answered with (errors are answered here, so their status is known).
func (m *metrics) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		began := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" || route == "/*" {
			route = "unmatched" // any path a client makes up: one series for all
		}
		method := c.Request().Method
		switch method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodHead:
		default:
			method = "other"
		}
		m.requests.WithLabelValues(route, method, strconv.Itoa(c.Response().Status)).Inc()
		m.latency.WithLabelValues(route, method).Observe(time.Since(began).Seconds())
		return nil
	}
}
