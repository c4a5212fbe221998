// Command presence-bench runs the benchmark scenarios (make bench) and
// prints a table; it writes bench/results/latest.json. So far: idle, against
// make run's all-in-one.
//
//	presence-bench [-profile quick|full] [-out bench/results/latest.json]
//
// It builds the all-in-one server and the load generator (presence-load),
// starts the server on free loopback ports with a fresh data directory,
// and drives it with load processes, each from its own source addresses in
// 127.0.0.0/8 (a process may hold at most 20,000 open files here, and one
// source address runs out of ephemeral ports near 28,000 connections).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
}

// Machine describes where it ran.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemBytes int64  `json:"mem_bytes"`
	Go       string `json:"go"`
}

func run(args []string) error {
	fs := flag.NewFlagSet("presence-bench", flag.ContinueOnError)
	profile := fs.String("profile", "quick", "quick (make bench) or full (make bench-full)")
	out := fs.String("out", "bench/results/latest.json", "where to write the results")
	if err := fs.Parse(args); err != nil {
		return err
	}
	idleConns := 15000
	lat := latencyParams{Members: 200, Rate: 100, For: 20 * time.Second}
	if *profile == "full" {
		idleConns = 18000
		lat.For = time.Minute
	} else if *profile != "quick" {
		return fmt.Errorf("-profile %q: want quick or full", *profile)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	work, err := os.MkdirTemp("", "presence-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Fprintln(os.Stderr, "presence-bench: building the server and the load generator")
	for _, pkg := range []string{"./allinone/cmd/presence", "./bench/cmd/presence-load"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", work, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	rep := Report{Profile: *profile, When: time.Now().UTC().Format(time.RFC3339), Machine: machine()}
	res, err := idle(ctx, work, idleConns, filepath.Dir(*out))
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	rep.Results = append(rep.Results, res...)
	if res, err = latency(ctx, work, lat); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	rep.Results = append(rep.Results, res...)
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	printTable(os.Stdout, rep)
	fmt.Fprintf(os.Stderr, "presence-bench: wrote %s\n", *out)
	return nil
}

// idle connects n clients to the all-in-one server and measures its RSS
// and goroutines per connection; it saves the server's heap profile with
// them connected in dir (idle-heap.pprof).
func idle(ctx context.Context, bin string, n int, dir string) ([]Result, error) {
	srv, err := startServer(ctx, bin)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	base, err := settledRSS(srv.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	g0, err := srv.goroutines()
	if err != nil {
		return nil, err
	}
	const perProc = 8000
	procs := (n + perProc - 1) / perProc
	fmt.Fprintf(os.Stderr, "presence-bench: idle: %d clients in %d load processes (server RSS before: %.1f MiB)\n", n, procs, float64(base)/(1<<20))
	var loads []*loadProc
	defer func() {
		for _, l := range loads {
			l.stop()
		}
	}()
	began := time.Now()
	total := load.Connected{}
	for i := range procs {
		share := min(perProc, n-i*perProc)
		// Two source addresses per process, 127.0.0.2 and up.
		src := fmt.Sprintf("127.0.0.%d,127.0.0.%d", 2+2*i, 3+2*i)
		l, err := startLoad(ctx, bin, "idle", "-url", srv.wsURL, "-key", benchKey, "-secret", benchSecret,
			"-n", strconv.Itoa(share), "-src", src, "-prefix", fmt.Sprintf("idle%d", i))
		if err != nil {
			return nil, err
		}
		loads = append(loads, l)
	}
	for _, l := range loads {
		var c load.Connected
		if err := l.result(&c); err != nil {
			return nil, err
		}
		total.Conns += c.Conns
		total.Failed += c.Failed
		total.Retries += c.Retries
	}
	total.Took = time.Since(began)
	if total.Conns == 0 {
		return nil, fmt.Errorf("no client connected (%d failed)", total.Failed)
	}
	rss, err := settledRSS(srv.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	per := float64(rss-base) / float64(total.Conns)
	g1, err := srv.goroutines()
	if err != nil {
		return nil, err
	}
	gPer := float64(g1-g0) / float64(total.Conns)
	if err := srv.saveProfile("heap", filepath.Join(dir, "idle-heap.pprof")); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "presence-bench: idle: %d connected (%d failed, %d retried) in %s; server RSS %.1f MiB, %.1f KB and %.2f goroutines per connection\n",
		total.Conns, total.Failed, total.Retries, total.Took.Round(time.Millisecond), float64(rss)/(1<<20), per/1000, gPer)
	return []Result{
		{Scenario: "idle", System: "presence", Metric: "conns", Value: float64(total.Conns), Unit: "connections"},
		{Scenario: "idle", System: "presence", Metric: "rss_per_conn_bytes", Value: per, Unit: "bytes"},
		{Scenario: "idle", System: "presence", Metric: "goroutines_per_conn", Value: gPer, Unit: "goroutines"},
		{Scenario: "idle", System: "presence", Metric: "connect_per_sec", Value: total.PerSecond(), Unit: "connects/s"},
	}, nil
}

const (
	benchKey    = "bench"
	benchSecret = "bench-secret-not-for-production"
)

type server struct {
	cmd     *exec.Cmd
	wsURL   string
	httpURL string
	// pprof is the base URL of its /debug/pprof/.
	pprof string
}

// goroutines reads the server's goroutine count from its profile.
func (s *server) goroutines() (int, error) {
	resp, err := http.Get(s.pprof + "goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, err
	}
	// "goroutine profile: total N"
	f := strings.Fields(line)
	if len(f) == 0 {
		return 0, fmt.Errorf("goroutine profile starts %q", line)
	}
	return strconv.Atoi(f[len(f)-1])
}

// saveProfile writes the server's named profile to path.
func (s *server) saveProfile(name, path string) error {
	resp, err := http.Get(s.pprof + name)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startServer starts the all-in-one server on free loopback ports with a
// fresh data directory and waits until it is ready.
func startServer(ctx context.Context, bin string) (*server, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp("", "presence-bench-data-")
	if err != nil {
		return nil, err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "presence"))
	cmd.Env = append(os.Environ(),
		"PRESENCE_DATA_DIR="+data, "PRESENCE_HTTP_ADDR="+httpAddr,
		"PRESENCE_WS_ADDR=127.0.0.1:"+strconv.Itoa(ports[1]), "PRESENCE_NATS_ADDR=127.0.0.1:"+strconv.Itoa(ports[2]),
		"PRESENCE_API_KEY="+benchKey, "PRESENCE_API_SECRET="+benchSecret, "PRESENCE_LOG_LEVEL=warn",
		"PRESENCE_PPROF_ADDR=127.0.0.1:"+strconv.Itoa(ports[3]))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, httpURL: "http://" + httpAddr, wsURL: "ws://127.0.0.1:" + strconv.Itoa(ports[1]) + "/connect", pprof: "http://127.0.0.1:" + strconv.Itoa(ports[3]) + "/debug/pprof/"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("server not ready on %s within 60 s", httpAddr)
		}
		time.Sleep(100 * time.Millisecond) // polling the readiness probe
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

type loadProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	out   *bufio.Reader
}

func startLoad(ctx context.Context, bin string, args ...string) (*loadProc, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "presence-load"), args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &loadProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}, nil
}

// result reads the process's JSON line.
func (l *loadProc) result(v any) error {
	line, err := l.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("load process: %w", err)
	}
	return json.Unmarshal(line, v)
}

// stop closes its stdin (it closes its sockets and exits) and waits.
func (l *loadProc) stop() {
	_ = l.stdin.Close()
	_ = l.cmd.Wait()
}

// settledRSS waits for the process's memory to settle (the Go runtime
// returns freed memory gradually) and returns the lowest of a few samples
// of its resident set.
func settledRSS(pid int) (int64, error) {
	time.Sleep(5 * time.Second) // let the runtime collect and scavenge
	low := int64(-1)
	for range 5 {
		rss, err := vmRSS(pid)
		if err != nil {
			return 0, err
		}
		if low < 0 || rss < low {
			low = rss
		}
		time.Sleep(time.Second) // between samples
	}
	return low, nil
}

// vmRSS reads VmRSS from /proc/<pid>/status, in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemBytes = kb * 1024
				}
			}
		}
	}
	return m
}

// target is what Presence must reach for one metric.
type target struct {
	text string
	max  float64
}

// targets are the issue's, by scenario and metric.
var targets = map[string]target{
	"idle/rss_per_conn_bytes": {"≤ 20 KB", 20000},
	"latency/p50_ms":          {"< 2 ms", 2},
	"latency/p99_ms":          {"< 10 ms", 10},
	"latency/p999_ms":         {"< 50 ms", 50},
	"latency/lost":            {"0", 0},
}

func printTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "\nBenchmarks (%s profile, %d CPUs, %s):\n\n", rep.Profile, rep.Machine.CPUs, rep.Machine.Go)
	fmt.Fprintln(w, "| scenario | metric | Presence | peer | ratio | target |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range rep.Results {
		verdict := ""
		if t, ok := targets[r.Scenario+"/"+r.Metric]; ok {
			verdict = t.text + " (holds)"
			if r.Value > t.max {
				verdict = t.text + " (misses)"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s %s | not measured yet | — | %s |\n", r.Scenario, r.Metric, strconv.FormatFloat(r.Value, 'f', 2, 64), r.Unit, verdict)
	}
}
