package worker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/presencehq/presence/pkg/connevent"
)

// A worker is ready while it consumes its input and not once it stops; its
// metrics count what it applied and read the consumer's backlog.
func TestWorkerServesItsReadinessAndMetrics(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(h.w.Handler())
	defer srv.Close()
	h.publish(ev(connevent.Opened, "ann", "c1"))
	if _, _, online := h.next(); !online {
		t.Fatal("ann did not go online")
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		if code, body := fetch(t, srv.URL+path); code != want {
			t.Fatalf("%s = %d %q, want %d", path, code, body, want)
		}
	}
	_, body := fetch(t, srv.URL+"/metrics")
	for _, line := range []string{
		`presence_worker_events_total{type="opened"} 1`,
		`presence_worker_transitions_total{to="online"} 1`,
		`presence_worker_transitions_total{to="offline"} 0`,
		`presence_worker_apply_seconds_count 1`,
		`presence_worker_consumer_pending 0`,
		`presence_worker_redeliveries_total 0`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	h.w.Close()
	if code, body := fetch(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopping") {
		t.Fatalf("/readyz of a stopped worker = %d %q, want 503 stopping", code, body)
	}
}

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
