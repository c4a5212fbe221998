package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/presencehq/presence/bench/load"
)

const (
	benchKey    = "bench"
	benchSecret = "bench-secret-not-for-production"
)

// The two systems make bench measures.
const (
	presence   = "presence"
	centrifuge = "centrifuge"
)

// server is a running system under measurement: Presence's all-in-one or
// the centrifuge peer, in a child process.
type server struct {
	system  string
	cmd     *exec.Cmd
	wsURL   string
	httpURL string // Presence's REST API; the peer's /health
	// pprof is the base URL of its /debug/pprof/.
	pprof string
	// cleanup, when set, runs once the process has exited.
	cleanup func()
}

// start starts system on free loopback ports and waits until it is ready;
// limits as scenario.limits says.
func start(ctx context.Context, e env, system string, limits bool) (*server, error) {
	if system == centrifuge {
		return startPeer(ctx, e.bin)
	}
	return startServer(ctx, e.bin, e.httpAddr, limits)
}

// client is the system as its clients see it, from the given source
// addresses.
func (s *server) client(sources []string) load.System {
	if s.system == centrifuge {
		return load.NewCentrifuge(s.wsURL, benchSecret, sources)
	}
	return load.NewPresence(load.Target{URL: s.wsURL, Key: benchKey, Secret: benchSecret},
		load.REST{Base: s.httpURL, Key: benchKey, Secret: benchSecret}, sources)
}

// loadArgs are the presence-load flags that point it at s.
func (s *server) loadArgs(sub, prefix string, sources []string) []string {
	return []string{sub, "-system", s.system, "-url", s.wsURL, "-rest", s.httpURL, "-key", benchKey, "-secret", benchSecret,
		"-src", strings.Join(sources, ","), "-prefix", prefix}
}

// sources are n source addresses of block b: 127.b.p.1 … for load
// process p. Each scenario and system has its own block, so sockets one
// run leaves in TIME_WAIT never take ports from the next.
func sources(b, p, n int) []string {
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.%d.%d.%d", b, p, 1+i)
	}
	return ips
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

// saveProfile writes the server's named profile to path
// ("profile?seconds=N" samples the CPU for N seconds).
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

// cpuProfile samples the server's CPU for d into path, in the background;
// wait returns when the profile is saved.
func (s *server) cpuProfile(d time.Duration, path string) (wait func() error) {
	errc := make(chan error, 1)
	go func() {
		errc <- s.saveProfile(fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), path)
	}()
	return func() error { return <-errc }
}

// startServer starts the all-in-one server on free loopback ports (REST on
// httpAddr when set) with a fresh data directory and waits until it is
// ready. With limits, its connect limit per source address is the default
// and X-Forwarded-For is believed from 127.0.0.1; without, there is no such
// limit.
func startServer(ctx context.Context, bin, httpAddr string, limits bool) (*server, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp("", "presence-bench-data-")
	if err != nil {
		return nil, err
	}
	if httpAddr == "" {
		httpAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "presence"))
	cmd.Env = append(os.Environ(),
		"PRESENCE_DATA_DIR="+data, "PRESENCE_HTTP_ADDR="+httpAddr,
		"PRESENCE_WS_ADDR=127.0.0.1:"+strconv.Itoa(ports[1]), "PRESENCE_NATS_ADDR=127.0.0.1:"+strconv.Itoa(ports[2]),
		"PRESENCE_API_KEY="+benchKey, "PRESENCE_API_SECRET="+benchSecret, "PRESENCE_LOG_LEVEL=warn",
		"PRESENCE_PPROF_ADDR=127.0.0.1:"+strconv.Itoa(ports[3]))
	if limits {
		cmd.Env = append(cmd.Env, "PRESENCE_TRUSTED_PROXIES=127.0.0.1")
	} else {
		// The load's clients all come from loopback addresses: a limit per
		// address would measure the limit.
		cmd.Env = append(cmd.Env, "PRESENCE_CONNECT_RATE_PER_IP=0")
	}
	s := &server{system: presence, cmd: cmd, httpURL: "http://" + httpAddr, wsURL: "ws://127.0.0.1:" + strconv.Itoa(ports[1]) + "/connect",
		pprof: "http://127.0.0.1:" + strconv.Itoa(ports[3]) + "/debug/pprof/", cleanup: func() { os.RemoveAll(data) }}
	if err := s.run("http://" + httpAddr + "/readyz"); err != nil {
		return s, err
	}
	fmt.Fprintf(os.Stderr, "presence-bench: Presence's metrics: http://%s/metrics\n", httpAddr)
	return s, nil
}

// startPeer starts the centrifuge peer on free loopback ports.
func startPeer(ctx context.Context, bin string) (*server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "centrifuge-peer"), "-addr", addr, "-secret", benchSecret,
		"-pprof", "127.0.0.1:"+strconv.Itoa(ports[1]))
	s := &server{system: centrifuge, cmd: cmd, httpURL: "http://" + addr, wsURL: "ws://" + addr + "/connection/websocket", pprof: "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/debug/pprof/"}
	return s, s.run("http://" + addr + "/health")
}

// run starts the process and polls ready until it answers 200.
func (s *server) run(ready string) error {
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	s.cmd.Cancel = func() error { return s.cmd.Process.Signal(syscall.SIGTERM) }
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("%s not ready at %s within 60 s", s.system, ready)
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
	if s.cleanup != nil {
		s.cleanup()
	}
}

type loadProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
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
	return &loadProc{cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(stdout, 1<<16)}, nil
}

// result reads the process's next JSON line.
func (l *loadProc) result(v any) error {
	line, err := l.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("load process: %w", err)
	}
	return json.Unmarshal(line, v)
}

// tell writes a line to the process's stdin.
func (l *loadProc) tell(line string) error {
	_, err := io.WriteString(l.stdin, line+"\n")
	return err
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

// cpuTime reads the CPU time pid has used (user and system) from
// /proc/<pid>/stat, counted in the kernel's clock ticks (USER_HZ, 100 a
// second on Linux).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after it. utime and stime are the stat's 14th and 15th.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %.100s", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %.100s", pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
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
