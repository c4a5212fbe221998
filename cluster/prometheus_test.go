package cluster

import (
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/presencehq/presence/cluster/dashboard"
)

var updatePrometheus = flag.Bool("update-prometheus", false, "rewrite deploy/prometheus/prometheus.yml from the topology")

// deploy/prometheus/prometheus.yml is the default topology's scrape
// configuration, generated: the monitoring profile of docker-compose.yml
// scrapes exactly the nodes it runs. promtool, when installed, checks it.
func TestPrometheusConfigIsGenerated(t *testing.T) {
	path := filepath.Join("..", "deploy", "prometheus", "prometheus.yml")
	want := Default().PrometheusConfig(Compose)
	if *updatePrometheus {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not what the topology generates: run `go test ./cluster -run TestPrometheusConfig -update-prometheus`", path)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus); the configuration was not checked by Prometheus")
	}
	if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// checkScrapes reads every node's /metrics as the monitoring profile's
// Prometheus does, and fails for each metric of the contract
// (docs/metrics.md) that the node's kind should expose and does not, or
// exposes with another type: the dashboard would draw nothing for it.
func checkScrapes(t *testing.T, c *Cluster) {
	t.Helper()
	contract, err := dashboard.ReadContract(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Topology().Nodes {
		if n.MetricsPort() == 0 {
			continue
		}
		resp, err := http.Get("http://" + hostPort(Loopback.Listen, n.MetricsPort()) + "/metrics")
		if err != nil {
			t.Errorf("%s: %v", n.Name, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET /metrics: %s %v", n.Name, resp.Status, err)
			continue
		}
		for _, p := range dashboard.CheckScrape(contract, body, func(m dashboard.Metric) bool { return m.ExposedBy(string(n.Kind)) }) {
			t.Errorf("%s: %s", n.Name, p)
		}
	}
}
