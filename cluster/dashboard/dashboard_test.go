package dashboard

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/grafana/dashboards/presence.json from this package")

var (
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "dashboards", "presence.json")
	contractFile  = filepath.Join("..", "..", "docs", "metrics.md")
)

// TestDashboardIsGenerated keeps the provisioned JSON what this package
// builds.
func TestDashboardIsGenerated(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(dashboardFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is not what cluster/dashboard builds: run `go test ./cluster/dashboard -update`", dashboardFile)
	}
}

// The parts of the dashboard JSON the checks below read: what Grafana
// loads, not the builder's idea of it.
type jsonDashboard struct {
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) jsonDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d jsonDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// queries lists every PromQL expression of the dashboard, each with where
// it is: panel targets and the variables' label_values queries.
func (d jsonDashboard) queries() map[string]string {
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok && v.Type == "query" {
			inner := strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
			if i := strings.LastIndex(inner, ","); i >= 0 {
				inner = inner[:i] // the label's name
			}
			out["variable "+v.Name] = inner
		}
	}
	return out
}

// TestDashboardUsesOnlyContractMetrics fails when a query names a metric
// docs/metrics.md does not list, or a histogram other than by its
// _bucket, _sum or _count series; and when a metric of the contract has
// no panel.
func TestDashboardUsesOnlyContractMetrics(t *testing.T) {
	contract, err := ReadContract(contractFile)
	if err != nil {
		t.Fatal(err)
	}
	d := readDashboard(t)
	used := map[string]bool{}
	qs := d.queries()
	if len(qs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for where, expr := range qs {
		names := MetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			m, ok := Resolve(contract, n)
			if !ok {
				t.Errorf("%s: %s is not a series of the contract (%s): %s", where, n, contractFile, expr)
				continue
			}
			used[m.Name] = true
		}
	}
	for _, m := range contract {
		if !used[m.Name] {
			t.Errorf("%s (%s, from %s) is in the contract but on no panel", m.Name, m.Type, m.From)
		}
	}
}

// TestDashboardPanels checks what every panel needs to work anywhere: a
// unique id, the datasource variable, and queries filtered by the job and
// instance choices.
func TestDashboardPanels(t *testing.T) {
	d := readDashboard(t)
	var ids []int
	for _, p := range d.Panels {
		if slices.Contains(ids, p.ID) || p.ID == 0 {
			t.Errorf("panel %q: id %d is missing or taken", p.Title, p.ID)
		}
		ids = append(ids, p.ID)
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `job=~"$job"`) || !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: %s ignores the job or instance choice", p.Title, tg.Expr)
			}
		}
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Equal(vars, []string{"datasource", "job", "instance"}) {
		t.Errorf("variables %v, want datasource, job, instance", vars)
	}
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       []string
	}{
		{"a bare selector", `go_goroutines{job=~"$job"}`, []string{"go_goroutines"}},
		{"a rate summed by labels", `sum by (instance, result) (rate(presence_gateway_lease_renewals_total{job=~"$job"}[$__rate_interval]))`,
			[]string{"presence_gateway_lease_renewals_total"}},
		{"a quantile of a histogram, grouping after the aggregation", `histogram_quantile(0.99, sum(rate(x_seconds_bucket{a="b"}[5m])) by (le))`,
			[]string{"x_seconds_bucket"}},
		{"label values inside strings are not metrics", `up{job="not_a_metric", instance=~"a|b"}`, []string{"up"}},
		{"binary operations name both sides once", `a_total / on(instance) group_left b + a_total * 1e3`, []string{"a_total", "b"}},
		{"offset and durations are not metrics", `rate(c_total[5m] offset 1h) > bool 0`, []string{"c_total"}},
		{"a metric named in a matcher", `{__name__="x"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MetricNames(tc.expr); !slices.Equal(got, tc.want) {
				t.Errorf("MetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestReadContract(t *testing.T) {
	contract, err := ReadContract(contractFile)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := Resolve(contract, "presence_gateway_relay_latency_seconds_bucket")
	if !ok || m.Type != "histogram" || !m.ExposedBy("gateway") {
		t.Errorf("relay latency: %+v, %v", m, ok)
	}
	if _, ok := Resolve(contract, "presence_gateway_relay_latency_seconds"); ok {
		t.Error("a histogram's bare name resolved")
	}
	m, _ = Resolve(contract, "presence_api_requests_total")
	if !slices.Equal(m.Labels, []string{"route", "method", "code"}) {
		t.Errorf("presence_api_requests_total labels %v", m.Labels)
	}
	if m, _ := Resolve(contract, "go_goroutines"); !m.ExposedBy("worker") {
		t.Errorf("go_goroutines is exposed by %q, want every service", m.From)
	}
	if m, _ := Resolve(contract, "up"); m.ExposedBy("gateway") {
		t.Errorf("up is exposed by %q, want Prometheus alone", m.From)
	}

	bad := filepath.Join(t.TempDir(), "metrics.md")
	for what, row := range map[string]string{
		"a counter without _total": "| `x_count` | counter | | gateway | x |",
		"an unknown type":          "| `x` | summary | | gateway | x |",
		"no exposer":               "| `x` | gauge | | | x |",
		"a short row":              "| `x` | gauge |",
	} {
		if err := os.WriteFile(bad, []byte("| metric | type | labels | exposed by | meaning |\n| --- |\n"+row+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadContract(bad); err == nil {
			t.Errorf("%s: read without error", what)
		}
	}
}

func TestCheckScrape(t *testing.T) {
	contract := []Metric{
		{Name: "a_total", Type: "counter", From: "gateway"},
		{Name: "b_seconds", Type: "histogram", From: "gateway"},
		{Name: "c", Type: "gauge", From: "worker"},
		{Name: "up", Type: "gauge", From: "Prometheus"},
	}
	scrape := []byte("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# TYPE b_seconds summary\nb_seconds_sum 0\n")
	got := CheckScrape(contract, scrape, func(m Metric) bool { return m.ExposedBy("gateway") })
	want := []string{"b_seconds is a summary, the contract says histogram"}
	if !slices.Equal(got, want) {
		t.Errorf("gateway scrape: %q, want %q", got, want)
	}
	got = CheckScrape(contract, scrape, func(m Metric) bool { return m.From != "Prometheus" })
	if len(got) != 2 || !strings.Contains(got[1], "c (gauge) is not exposed") {
		t.Errorf("every service's metrics from one scrape: %q", got)
	}
}
