// Package dashboard is Presence's Grafana dashboard, written as code with
// the Grafana Foundation SDK (Apache-2.0), and the metric contract it is
// checked against. deploy/grafana/dashboards/presence.json is its output:
// a test fails when the file falls behind (`go test ./cluster/dashboard
// -update` rewrites it), and when a query names a metric that
// docs/metrics.md, the contract, does not list.
//
// Every query is filtered by the dashboard's job and instance choices and
// most are drawn per instance, so one gateway or worker that falls behind
// shows as its own line.
package dashboard

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's fixed uid: links to it survive a re-provisioning.
const UID = "presence"

// sel is every query's series selector: the job and instance variables.
const sel = `job=~"$job", instance=~"$instance"`

// datasource is the Prometheus the datasource variable names.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// query is one line (or set of lines) of a panel.
type query struct {
	expr, legend string
}

// panel is a time series panel of the dashboard.
type panel struct {
	title, description, unit string
	queries                  []query
	// width in grid columns (of 24); 8 when zero.
	width uint32
}

// row is a titled group of panels.
type row struct {
	title  string
	panels []panel
}

// rate is the per-second rate of counter metric, summed by the labels by.
func rate(metric, by string) string {
	return fmt.Sprintf(`sum by (%s) (rate(%s{%s}[$__rate_interval]))`, by, metric, sel)
}

// quantiles are p50, p95 and p99 of histogram metric, over all instances.
func quantiles(metric string, qs ...string) []query {
	var out []query
	for _, q := range qs {
		out = append(out, query{
			expr:   fmt.Sprintf(`histogram_quantile(0.%s, sum by (le) (rate(%s_bucket{%s}[$__rate_interval])))`, q, metric, sel),
			legend: "p" + q,
		})
	}
	return out
}

// rows is the whole dashboard, top to bottom.
func rows() []row {
	return []row{
		{"Connections", []panel{
			{title: "Open WebSockets", unit: "short",
				description: "WebSockets open on each gateway.",
				queries:     []query{{fmt.Sprintf(`sum by (instance) (presence_gateway_connections{%s})`, sel), "{{instance}}"}}},
			{title: "Connects/s by result", unit: "ops",
				description: "Connect attempts answered with connection.ok, or rejected (a bad token or input, a limit, the gateway draining).",
				queries:     []query{{rate("presence_gateway_connects_total", "result"), "{{result}}"}}},
			{title: "Disconnects/s by reason", unit: "ops",
				description: "Sockets closed: by the client, as too slow (1013), for flooding (1008), an oversize frame, missed pings, a gateway draining (1012).",
				queries:     []query{{rate("presence_gateway_disconnects_total", "reason"), "{{reason}}"}}},
		}},
		{"Presence", []panel{
			{title: "Transitions/s", unit: "ops",
				description: "Users going online and offline, as the workers decide it.",
				queries:     []query{{rate("presence_worker_transitions_total", "to"), "{{to}}"}}},
			{title: "Events relayed/s", unit: "ops",
				description: "user.presence.changed events written to watching sockets, per gateway (one event to three watchers counts three).",
				queries:     []query{{rate("presence_gateway_events_relayed_total", "instance"), "{{instance}}"}}},
			{title: "Transition → watcher latency", unit: "s",
				description: "From the connect or close that made a transition, as its gateway saw it, to the event queued on a watcher's socket (design target: p99 < 10 ms on one machine).",
				queries:     quantiles("presence_gateway_relay_latency_seconds", "50", "95", "99")},
		}},
		{"Worker", []panel{
			{title: "Input events/s by type", unit: "ops",
				description: "Input events the workers applied: opened, closed, active, visibility, profile_changed, node_started, node_expired.",
				queries:     []query{{rate("presence_worker_events_total", "type"), "{{type}}"}}},
			{title: "Apply latency", unit: "s",
				description: "Time to apply one input event.",
				queries:     quantiles("presence_worker_apply_seconds", "50", "99")},
			{title: "KV conflicts and retries/s", unit: "ops",
				description: "Compare-and-sets of presence state that failed because the key had moved on, and updates tried again.",
				queries: []query{
					{rate("presence_worker_kv_conflicts_total", "instance"), "conflicts {{instance}}"},
					{rate("presence_worker_kv_retries_total", "instance"), "retries {{instance}}"},
				}},
			{title: "Consumer backlog", unit: "short", width: 12,
				description: "Input events waiting for a worker (pending) and handed out but not yet acknowledged (ack pending). The workers share one consumer and each reports it: the panel shows the highest report.",
				queries: []query{
					{fmt.Sprintf(`max(presence_worker_consumer_pending{%s})`, sel), "pending"},
					{fmt.Sprintf(`max(presence_worker_consumer_ack_pending{%s})`, sel), "ack pending"},
				}},
			{title: "Redeliveries/s", unit: "ops", width: 12,
				description: "Input events delivered again: a worker died holding them, or applying them failed.",
				queries:     []query{{rate("presence_worker_redeliveries_total", "instance"), "{{instance}}"}}},
		}},
		{"Gateway leases", []panel{
			{title: "Lease renewals/s by result", unit: "ops", width: 12,
				description: "Node lease renewals per gateway; errors in a row end with the gateway's users taken offline.",
				queries:     []query{{rate("presence_gateway_lease_renewals_total", "instance, result"), "{{instance}} {{result}}"}}},
			{title: "Lease expiries", unit: "short", width: 12,
				description: "Gateway leases the workers marked expired, per rate interval: each is a gateway gone silent, whose users go offline.",
				queries:     []query{{fmt.Sprintf(`sum by (instance) (increase(presence_worker_lease_expiries_total{%s}[$__rate_interval]))`, sel), "{{instance}}"}}},
		}},
		{"Slow consumers", []panel{
			{title: "Slow consumers/s by kind", unit: "ops", width: 12,
				description: "websocket: a socket closed for not reading its events (1013; the SDK reconnects). nats: a gateway falling behind its NATS subscriptions.",
				queries:     []query{{rate("presence_gateway_slow_consumers_total", "kind"), "{{kind}}"}}},
			{title: "Sockets closed as too slow/s", unit: "ops", width: 12,
				description: "Disconnects with reason slow_consumer, per gateway.",
				queries:     []query{{fmt.Sprintf(`sum by (instance) (rate(presence_gateway_disconnects_total{%s, reason="slow_consumer"}[$__rate_interval]))`, sel), "{{instance}}"}}},
		}},
		{"HTTP", []panel{
			{title: "Requests/s by route and code", unit: "reqps",
				description: "REST requests answered by the api nodes.",
				queries:     []query{{rate("presence_api_requests_total", "route, code"), "{{route}} {{code}}"}}},
			{title: "Latency p99 by route", unit: "s",
				description: "99th percentile of the time to answer, per route.",
				queries:     []query{{fmt.Sprintf(`histogram_quantile(0.99, sum by (route, le) (rate(presence_api_request_duration_seconds_bucket{%s}[$__rate_interval])))`, sel), "{{route}}"}}},
			{title: "Rate limited (429)/s by limit", unit: "reqps",
				description: "Requests answered 429: one user over PRESENCE_RATE_LIMIT_USER, or the API key over PRESENCE_RATE_LIMIT_API_KEY.",
				queries:     []query{{rate("presence_api_rate_limited_total", "limit"), "{{limit}}"}}},
		}},
		{"Process", []panel{
			{title: "CPU", unit: "percentunit",
				description: "CPU used, per process (100% is one core).",
				queries:     []query{{fmt.Sprintf(`rate(process_cpu_seconds_total{%s}[$__rate_interval])`, sel), "{{instance}}"}}},
			{title: "Resident memory", unit: "bytes",
				description: "RSS per process.",
				queries:     []query{{fmt.Sprintf(`process_resident_memory_bytes{%s}`, sel), "{{instance}}"}}},
			{title: "Goroutines", unit: "short",
				description: "Goroutines per process.",
				queries:     []query{{fmt.Sprintf(`go_goroutines{%s}`, sel), "{{instance}}"}}},
		}},
	}
}

// Build builds the dashboard.
func Build() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("Presence").
		Uid(UID).
		Description("Presence: connections, presence transitions, workers, leases, slow consumers, the REST API and each process. Generated by cluster/dashboard; metrics: docs/metrics.md.").
		Tags([]string{"presence", "nats"}).
		Refresh("10s").
		Time("now-30m", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus")).
		WithVariable(variable("job", "Job", "label_values(up, job)")).
		WithVariable(variable("instance", "Instance", `label_values(up{job=~"$job"}, instance)`))
	id := uint32(0)
	for _, r := range rows() {
		id++
		b.WithRow(dashboard.NewRowBuilder(r.title).Id(id))
		for _, p := range r.panels {
			id++
			b.WithPanel(p.build(id))
		}
	}
	return b.Build()
}

// variable is a multi-value choice of label values, "All" by default.
func variable(name, label, q string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
		Definition(q).
		Datasource(datasource).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

func (p panel) build(id uint32) *timeseries.PanelBuilder {
	w := p.width
	if w == 0 {
		w = 8
	}
	b := timeseries.NewPanelBuilder().
		Id(id).
		Title(p.title).
		Description(p.description).
		Datasource(datasource).
		Unit(p.unit).
		Min(0).
		Span(w).
		Height(8).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
	for i, q := range p.queries {
		b.WithTarget(prometheus.NewDataqueryBuilder().
			RefId(string(rune('A' + i))).
			Datasource(datasource).
			Expr(q.expr).
			LegendFormat(q.legend).
			Range())
	}
	return b
}

// JSON is the dashboard as deploy/grafana/dashboards/presence.json holds it.
func JSON() ([]byte, error) {
	d, err := Build()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
