package cluster

import (
	"fmt"
	"strings"
)

// MetricsPort is the port on which node serves Prometheus' /metrics: a
// gateway's, worker's or api node's main port; 0 for the others (a NATS
// node's monitoring port speaks JSON, and the load balancer has none).
func (n Node) MetricsPort() int {
	switch n.Kind {
	case Gateway, Worker, API:
		return n.Port
	}
	return 0
}

// PrometheusScrapeInterval is how often PrometheusConfig scrapes each node;
// Grafana's datasource is told the same (deploy/grafana/provisioning), so
// that $__rate_interval spans enough scrapes.
const PrometheusScrapeInterval = "5s"

// PrometheusConfig is deploy/prometheus/prometheus.yml, the Prometheus of
// docker-compose.yml's monitoring profile: one job per kind of service
// (gateway, worker, api), scraping every node of that kind that serves
// /metrics, with the node's name as its instance label, so the
// dashboard's legends and choices read gateway-1, not an address.
func (t Topology) PrometheusConfig(n Net) string {
	var b strings.Builder
	b.WriteString(`# Generated from cluster/topology.go (go test ./cluster -run TestPrometheusConfig -update-prometheus): do not edit.
# Prometheus of docker-compose.yml's monitoring profile: every gateway,
# worker and api node's /metrics (docs/metrics.md), job = the kind of node,
# instance = its name. The NATS nodes are not scraped: their monitoring
# port serves JSON (/varz, /jsz), which needs an exporter.

global:
  scrape_interval: ` + PrometheusScrapeInterval + `
  scrape_timeout: 4s
  evaluation_interval: 15s

scrape_configs:
`)
	for _, k := range []Kind{Gateway, Worker, API} {
		var nodes []Node
		for _, node := range t.Of(k) {
			if node.MetricsPort() != 0 {
				nodes = append(nodes, node)
			}
		}
		if len(nodes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n", k)
		for _, node := range nodes {
			fmt.Fprintf(&b, "      - targets: [%q]\n        labels:\n          instance: %s\n",
				hostPort(n.Host(node.Name), node.MetricsPort()), node.Name)
		}
	}
	return b.String()
}
