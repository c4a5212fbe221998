// Command presence-bench runs the benchmark scenarios (make bench) against
// Presence (make run's all-in-one) and the centrifuge peer (bench/peer),
// prints a table and writes bench/results/latest.json, and beside it plots
// of the latency and idle scenarios (latency.png, idle-rss.png).
//
//	presence-bench [-profile quick|full] [-out bench/results/latest.json] [-run idle,latency,churn,fanout,storm,hostile,idle-cluster] [-systems presence,centrifuge]
//
// It builds the all-in-one server, the peer and the load generator
// (presence-load), starts each system on free loopback ports (Presence
// with a fresh data directory) for each scenario, and drives it with load
// processes, each from its own source addresses in 127.0.0.0/8 (a process
// may hold at most 20,000 open files here, and one source address runs out
// of ephemeral ports near 28,000 connections). CPU profiles of the hot
// scenarios and a heap profile of the idle one go beside the results. The
// full profile also runs idle-cluster: 90,000 clients over 5 gateways of
// make cluster's topology, as processes on loopback (cluster.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/presencehq/presence/bench/load"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "presence-bench:", err)
		os.Exit(1)
	}
}

// Result is one measured number, as latest.json holds it.
type Result struct {
	Scenario string  `json:"scenario"`
	System   string  `json:"system"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// Report is latest.json.
type Report struct {
	Profile string   `json:"profile"`
	When    string   `json:"when"`
	Machine Machine  `json:"machine"`
	Results []Result `json:"results"`
	// Series are the raw measurements behind some results, for the plots;
	// readers of results alone can ignore them.
	Series []Series `json:"series,omitempty"`
}

// Series is one raw measurement of a scenario on a system: Y, or Y against
// X when X is set (then as long as Y).
type Series struct {
	Scenario string    `json:"scenario"`
	System   string    `json:"system"`
	Name     string    `json:"name"`
	X        []float64 `json:"x,omitempty"`
	XUnit    string    `json:"x_unit,omitempty"`
	Y        []float64 `json:"y"`
	YUnit    string    `json:"y_unit"`
}

// The series the plots draw.
const (
	// latencySamples: each transition's latency, in the order measured.
	latencySamples = "transition_latency"
	// rssByConns: the server's settled RSS against its idle connections.
	rssByConns = "rss_by_conns"
)

// Machine describes where it ran.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemBytes int64  `json:"mem_bytes"`
	Go       string `json:"go"`
}

// params size every scenario.
type params struct {
	idleConns int
	latency   latencyParams
	churn     load.ChurnParams
	fanout    fanoutParams
	storm     stormParams
	// clusterConns clients over clusterGateways gateways of a cluster
	// (idle-cluster, full profile only; 0: not run).
	clusterConns, clusterGateways int
}

func profileParams(profile string) (params, error) {
	p := params{
		idleConns: 15000,
		latency:   latencyParams{Members: 200, Rate: 100, For: 20 * time.Second},
		churn: load.ChurnParams{Users: 4000, Channels: 40, Step: 4 * time.Second, MaxLag: time.Second,
			Rates: []float64{500, 1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000, 32000}},
		fanout: fanoutParams{Watchers: 10000, Procs: 2, Channels: 100, Rounds: 20},
		storm:  stormParams{Clients: 10000, Procs: 2, Channels: 100},
	}
	switch profile {
	case "quick":
	case "full":
		p.idleConns = 18000
		p.latency.For = time.Minute
		p.churn.Step = 8 * time.Second
		p.fanout.Rounds = 50
		// The server holds every client's socket and a process may hold at
		// most 20,000 open files here.
		p.storm = stormParams{Clients: 18000, Procs: 3, Channels: 180}
		p.clusterConns, p.clusterGateways = 90000, 5
	default:
		return p, fmt.Errorf("-profile %q: want quick or full", profile)
	}
	return p, nil
}

// env is what every scenario gets: where the binaries and results are.
type env struct {
	bin, dir string
	p        params
	// httpAddr, when set, is where the measured Presence serves REST and
	// /metrics instead of a free port (-presence-http).
	httpAddr string
}

// scenario measures one system, already started: its results, and the
// raw series behind them when a plot draws them.
type scenario struct {
	name string
	run  func(ctx context.Context, e env, srv *server) ([]Result, []Series, error)
	// presenceOnly: the peer has nothing that compares, and is not run.
	presenceOnly bool
	// limits runs Presence with a deployment's connect limit per source
	// address, X-Forwarded-For believed from loopback (as from a load
	// balancer); without, the limit is off, because a scenario's clients
	// share few loopback addresses and the limit would be what it measured.
	limits bool
}

var scenarios = []scenario{
	{name: "idle", run: idle},
	{name: "latency", run: latency},
	{name: "churn", run: numbers(churn)},
	{name: "fanout", run: numbers(fanout)},
	{name: "storm", run: numbers(storm)},
	{name: "hostile", run: underAttack, presenceOnly: true, limits: true},
}

// numbers is a scenario that keeps no series.
func numbers(run func(ctx context.Context, e env, srv *server) ([]Result, error)) func(context.Context, env, *server) ([]Result, []Series, error) {
	return func(ctx context.Context, e env, srv *server) ([]Result, []Series, error) {
		res, err := run(ctx, e, srv)
		return res, nil, err
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("presence-bench", flag.ContinueOnError)
	profile := fs.String("profile", "quick", "quick (make bench) or full (make bench-full)")
	out := fs.String("out", "bench/results/latest.json", "where to write the results")
	only := fs.String("run", "", "comma-separated scenarios to run (default: all)")
	systems := fs.String("systems", presence+","+centrifuge, "comma-separated systems to measure")
	httpAddr := fs.String("presence-http", "", "serve the measured Presence's REST and /metrics on this address (e.g. 127.0.0.1:3030, for Prometheus and the dashboard) instead of a free port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := profileParams(*profile)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	work, err := os.MkdirTemp("", "presence-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Fprintln(os.Stderr, "presence-bench: building the server, the peer and the load generator")
	for _, pkg := range []string{"./allinone/cmd/presence", "./bench/cmd/centrifuge-peer", "./bench/cmd/presence-load"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", work, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	dir := filepath.Dir(*out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	e := env{bin: work, dir: dir, p: p, httpAddr: *httpAddr}
	rep := Report{Profile: *profile, When: time.Now().UTC().Format(time.RFC3339), Machine: machine()}
	began := time.Now()
	wanted := func(name string) bool { return *only == "" || slices.Contains(strings.Split(*only, ","), name) }
	for _, sc := range scenarios {
		if !wanted(sc.name) {
			continue
		}
		for _, system := range strings.Split(*systems, ",") {
			if sc.presenceOnly && system != presence {
				fmt.Fprintf(os.Stderr, "presence-bench: %s measures Presence only; not run on %s\n", sc.name, system)
				continue
			}
			res, series, err := measure(ctx, e, sc, system)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", sc.name, system, err)
			}
			rep.Results = append(rep.Results, res...)
			rep.Series = append(rep.Series, series...)
		}
	}
	if wanted("idle-cluster") && slices.Contains(strings.Split(*systems, ","), presence) {
		if p.clusterConns == 0 {
			fmt.Fprintln(os.Stderr, "presence-bench: idle-cluster runs in the full profile only")
		} else {
			res, err := clusterIdle(ctx, e, p.clusterGateways, p.clusterConns)
			if err != nil {
				return fmt.Errorf("idle-cluster on presence: %w", err)
			}
			for i := range res {
				res[i].Scenario, res[i].System = "idle-cluster", presence
			}
			rep.Results = append(rep.Results, res...)
		}
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	printTable(os.Stdout, rep)
	pngs, err := writePlots(dir, rep)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	fmt.Fprintf(os.Stderr, "presence-bench: wrote %s (%s)\n", strings.Join(append([]string{*out}, pngs...), ", "), time.Since(began).Round(time.Second))
	return nil
}

// measure runs one scenario on a fresh instance of system.
func measure(ctx context.Context, e env, sc scenario, system string) ([]Result, []Series, error) {
	srv, err := start(ctx, e, system, sc.limits)
	if err != nil {
		return nil, nil, err
	}
	defer srv.stop()
	res, series, err := sc.run(ctx, e, srv)
	for i := range res {
		res[i].Scenario, res[i].System = sc.name, system
	}
	for i := range series {
		series[i].Scenario, series[i].System = sc.name, system
	}
	return res, series, err
}

// logf reports progress on stderr.
func logf(srv *server, scenario, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "presence-bench: %s on %s: %s\n", scenario, srv.system, fmt.Sprintf(format, args...))
}

// target is what Presence must reach for one metric: ok judges its value,
// next to the peer's when needsPeer.
type target struct {
	text      string
	needsPeer bool
	ok        func(v, peer float64) bool
}

// targets are the issue's, by scenario and metric.
var targets = map[string]target{
	"idle/rss_per_conn_bytes":   {"≤ 20 KB and ≤ 0.6× peer", true, func(v, p float64) bool { return v <= 20000 && v <= 0.6*p }},
	"churn/transitions_per_sec": {"≥ 20,000/s and ≥ 1.5× peer", true, func(v, p float64) bool { return v >= 20000 && v >= 1.5*p }},
	"latency/p50_ms":            {"< 2 ms", false, func(v, _ float64) bool { return v < 2 }},
	"latency/p99_ms":            {"< 10 ms and ≤ peer", true, func(v, p float64) bool { return v < 10 && v <= p }},
	"latency/p999_ms":           {"< 50 ms", false, func(v, _ float64) bool { return v < 50 }},
	"latency/lost":              {"0", false, func(v, _ float64) bool { return v == 0 }},
	"fanout/last_delivery_ms":   {"≤ 250 ms", false, func(v, _ float64) bool { return v <= 250 }},
	"storm/converge_s":          {"≤ 10 s", false, func(v, _ float64) bool { return v <= 10 }},
	// Each gateway of the cluster, the one that took the most per connection.
	"idle-cluster/rss_per_conn_worst_bytes": {"≤ 20 KB on every gateway", false, func(v, _ float64) bool { return v <= 20000 }},
	// Well-behaved clients while hostile ones attack, against the same
	// server idle a moment before.
	"hostile/p50_ratio":   {"≤ 2× idle", false, func(v, _ float64) bool { return v <= 2 }},
	"hostile/p99_ratio":   {"≤ 2× idle", false, func(v, _ float64) bool { return v <= 2 }},
	"hostile/attack_lost": {"0", false, func(v, _ float64) bool { return v == 0 }},
}

// printTable prints one row per scenario and metric: Presence, the peer,
// their ratio, and whether Presence's target holds.
func printTable(w io.Writer, rep Report) {
	type row struct {
		scenario, metric, unit string
		values                 map[string]float64
	}
	var rows []*row
	byKey := map[string]*row{}
	for _, r := range rep.Results {
		k := r.Scenario + "/" + r.Metric
		if byKey[k] == nil {
			byKey[k] = &row{scenario: r.Scenario, metric: r.Metric, unit: r.Unit, values: map[string]float64{}}
			rows = append(rows, byKey[k])
		}
		byKey[k].values[r.System] = r.Value
	}
	fmt.Fprintf(w, "\nBenchmarks (%s profile, %d CPUs, %s):\n\n", rep.Profile, rep.Machine.CPUs, rep.Machine.Go)
	fmt.Fprintln(w, "| scenario | metric | Presence | peer (centrifuge) | ratio | target |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		v, hasV := r.values[presence]
		pv, hasP := r.values[centrifuge]
		cell := func(x float64, has bool) string {
			if !has {
				return "—"
			}
			return strconv.FormatFloat(x, 'f', 2, 64) + " " + r.unit
		}
		ratio := "—"
		if hasV && hasP && pv != 0 {
			ratio = strconv.FormatFloat(v/pv, 'f', 2, 64) + "×"
		}
		verdict := ""
		if t, ok := targets[r.scenario+"/"+r.metric]; ok && hasV {
			switch {
			case t.needsPeer && !hasP:
				verdict = t.text + " (no peer measured)"
			case t.ok(v, pv):
				verdict = t.text + " (holds)"
			default:
				verdict = t.text + " (misses)"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.scenario, r.metric, cell(v, hasV), cell(pv, hasP), ratio, verdict)
	}
}
