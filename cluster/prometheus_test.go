package cluster

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
