package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	v := variables{job: "gateway|api", instance: ".*", step: 10 * time.Second, rate: rateInterval(10*time.Second, 5*time.Second)}
	for _, tc := range []struct{ name, in, want string }{
		{"the dashboard's selector and rate window",
			`rate(x_total{job=~"$job", instance=~"$instance"}[$__rate_interval])`,
			`rate(x_total{job=~"gateway|api", instance=~".*"}[20s])`},
		{"braced variables and the plain interval",
			`avg_over_time(y{job=~"${job}"}[$__interval]) + z[${__rate_interval}]`,
			`avg_over_time(y{job=~"gateway|api"}[10s]) + z[20s]`},
	} {
		if got := v.expand(tc.in); got != tc.want {
			t.Errorf("%s: expand(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
	// Grafana's rule: at least four scrapes, and at least one step and a scrape.
	if got := rateInterval(time.Minute, 5*time.Second); got != 65*time.Second {
		t.Errorf("rate interval for a 1m step: %s, want 1m5s", got)
	}
}

func TestLegend(t *testing.T) {
	labels := map[string]string{"instance": "gateway-1", "result": "ok"}
	for format, want := range map[string]string{
		"{{instance}} {{ result }}": "gateway-1 ok",
		"p99":                       "p99",
		"{{missing}}x":              "x",
		"":                          `{instance="gateway-1", result="ok"}`,
	} {
		if got := legend(format, labels); got != want {
			t.Errorf("legend(%q) = %q, want %q", format, got, want)
		}
	}
}

// TestPage fills the preview with the real dashboard from a Prometheus
// that answers every query with two series but fails the api's, and
// checks what the page holds and what Prometheus was asked.
func TestPage(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := func(data any) { json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data}) }
		switch r.URL.Path {
		case "/api/v1/status/config":
			ok(map[string]string{"yaml": "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n"})
		case "/api/v1/status/buildinfo":
			ok(map[string]string{"version": "2.42.0+ds"})
		case "/api/v1/query_range":
			q := r.URL.Query()
			mu.Lock()
			asked = append(asked, q.Get("query"))
			mu.Unlock()
			if strings.Contains(q.Get("query"), "presence_api_") {
				json.NewEncoder(w).Encode(map[string]any{"status": "error", "error": "bad_data: no such thing"})
				return
			}
			var start, end, step int64
			fmt.Sscan(q.Get("start"), &start)
			fmt.Sscan(q.Get("end"), &end)
			fmt.Sscan(q.Get("step"), &step)
			var result []any
			for _, inst := range []string{"b", "a"} {
				var values [][2]any
				for ts := start; ts <= end; ts += step {
					values = append(values, [2]any{float64(ts), "1.5"})
				}
				values = append(values, [2]any{float64(end + step), "NaN"}) // past the range: dropped
				result = append(result, map[string]any{"metric": map[string]string{"instance": inst, "result": "ok", "to": "online"}, "values": values})
			}
			ok(map[string]any{"resultType": "matrix", "result": result})
		default:
			http.NotFound(w, r)
		}
	}))
	defer prom.Close()

	// The committed page with stand-ins for the npm package.
	preview := t.TempDir()
	for _, name := range []string{"preview.html", "preview.css", "preview.js"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "grafana", "preview", name))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(preview, name), string(b))
	}
	write(t, filepath.Join(preview, "node_modules/uplot/dist/uPlot.min.css"), ".uplot{}")
	write(t, filepath.Join(preview, "node_modules/uplot/dist/uPlot.iife.min.js"), "var uPlot = function () {};")

	end := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := newShot(prom.URL, end.Add(-10*time.Minute), end)
	s.job, s.source = "gateway", "from a test"
	o := options{dashboard: filepath.Join("..", "..", "..", "deploy", "grafana", "dashboards", "presence.json"), preview: preview}
	p, err := s.page(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.panels == 0 || p.withData != p.panels-3 {
		t.Errorf("%d panels, %d with data; want all but the 3 api panels", p.panels, p.withData)
	}
	if p.rows < 60 {
		t.Errorf("the grid is %d rows high", p.rows)
	}
	html := string(p.html)
	for _, want := range []string{"Presence", "Prometheus 2.42.0", "2026-11-30 11:50 to 2026-11-30 12:00 UTC", "from a test", "var uPlot", "Lease renewals/s by result", `"name":"a ok"`, "bad_data: no such thing"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// 10 minutes over about 300 points is a 2 s step, below the 5 s
	// scrapes: the step is the scrape interval, the rate window 4 scrapes.
	if len(asked) == 0 {
		t.Fatal("Prometheus was asked nothing")
	}
	window := regexp.MustCompile(`\[(\w+)\]`)
	for _, q := range asked {
		if strings.Contains(q, "$") || !strings.Contains(q, `job=~"gateway"`) {
			t.Errorf("asked %q: a variable left, or not the job chosen", q)
		}
		for _, m := range window.FindAllStringSubmatch(q, -1) {
			if m[1] != "20s" {
				t.Errorf("asked %q: window %s, want 20s", q, m[1])
			}
		}
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
