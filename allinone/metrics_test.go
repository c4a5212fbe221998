package allinone

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/presencehq/presence/pkg/natsauth"
)

// The numbers on :3030/metrics follow what happens: a user connects and a
// watcher gets the event, the user leaves, REST calls are answered; each
// shows in the gateway's, the worker's and the api's metrics.
func TestMetricsFollowWhatHappens(t *testing.T) {
	p := startForTest(t, Config{})
	nc, err := nats.Connect(p.NATSURLAs(natsauth.Admin))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	for _, probe := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, p.HTTPURL()+probe); code != http.StatusOK {
			t.Fatalf("%s = %d %q, want 200", probe, code, body)
		}
	}
	before := scrape(t, p)

	events := watcher(t, p, nc, "watcher", "ann")
	ws := connectUser(t, p, "ann")
	expect(t, events, seen{"ann", true})
	rest(t, p, "POST", "/users", map[string]any{"users": map[string]any{"bob": map[string]any{"id": "bob"}}})
	if code, _ := get(t, p.HTTPURL()+"/no/such/thing"); code != http.StatusUnauthorized {
		t.Fatalf("unknown path without credentials answered %d, want 401", code)
	}
	m := scrape(t, p)
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"presence_gateway_connections", nil, 2},
		{"presence_gateway_connects_total", map[string]string{"result": "ok"}, 2},
		{"presence_gateway_events_relayed_total", nil, 1},
		{"presence_gateway_relay_latency_seconds", nil, 1}, // observations
		{"presence_gateway_lease_renewals_total", map[string]string{"result": "ok"}, 0},
		{"presence_worker_events_total", map[string]string{"type": "opened"}, 2},
		{"presence_worker_transitions_total", map[string]string{"to": "online"}, 2},
		{"presence_worker_apply_seconds", nil, 2},
		{"presence_worker_consumer_pending", nil, 0},
		{"presence_worker_consumer_ack_pending", nil, 0},
		{"presence_worker_kv_conflicts_total", nil, 0},
		{"presence_api_requests_total", map[string]string{"route": "/users", "method": "POST", "code": "200"}, 1},
		{"presence_api_requests_total", map[string]string{"route": "unmatched", "method": "GET", "code": "401"}, 1},
		{"presence_api_request_duration_seconds", map[string]string{"route": "/users", "method": "POST"}, 1},
		{"go_goroutines", nil, 1},
		{"process_resident_memory_bytes", nil, 1},
	}
	for _, c := range checks {
		got, ok := value(m, c.name, c.labels)
		if !ok {
			t.Errorf("%s%v is missing", c.name, c.labels)
			continue
		}
		if !isGauge(m, c.name) {
			got -= valueOr0(before, c.name, c.labels) // counted since the start
		}
		if got < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, got, c.min)
		}
	}

	ws.Close(websocket.StatusNormalClosure, "")
	expect(t, events, seen{"ann", false})
	waitFor(t, "ann's disconnect counted", 10*time.Second, func() bool {
		m = scrape(t, p)
		left, _ := value(m, "presence_gateway_disconnects_total", map[string]string{"reason": "client"})
		offline, _ := value(m, "presence_worker_transitions_total", map[string]string{"to": "offline"})
		open, _ := value(m, "presence_gateway_connections", nil)
		return left == 1 && offline == 1 && open == 1
	})
	if lat := m["presence_gateway_relay_latency_seconds"]; lat.GetMetric()[0].GetHistogram().GetSampleSum() <= 0 {
		t.Error("the relay latency histogram sums to nothing")
	}
}

// expect waits for want among the watcher's events.
func expect(t *testing.T, events <-chan seen, want seen) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-events:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("no event %+v within 10s", want)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// scrape reads the all-in-one's /metrics.
func scrape(t *testing.T, p *Presence) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(p.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d", res.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	m, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// value is the metric of family name with labels (a subset): a counter's
// or gauge's value, a histogram's count of observations.
func value(m map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := m[name]
	if !ok {
		return 0, false
	}
next:
	for _, mt := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range mt.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case mt.Counter != nil:
			return mt.GetCounter().GetValue(), true
		case mt.Gauge != nil:
			return mt.GetGauge().GetValue(), true
		case mt.Histogram != nil:
			return float64(mt.GetHistogram().GetSampleCount()), true
		case mt.Untyped != nil:
			return mt.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func valueOr0(m map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	v, _ := value(m, name, labels)
	return v
}

func isGauge(m map[string]*dto.MetricFamily, name string) bool {
	f, ok := m[name]
	return ok && f.GetType() == dto.MetricType_GAUGE
}
