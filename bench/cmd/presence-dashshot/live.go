package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/presencehq/presence/bench/load"
	"github.com/presencehq/presence/cluster/dashboard"
	"github.com/presencehq/presence/pkg/token"
)

// live is the all-in-one and the Prometheus scraping it, on free loopback
// ports in a temporary directory.
type live struct {
	dir                  string
	httpURL, wsURL, prom string
	key, secret          string
	presence, prometheus *proc
	// idle holds the users who stay connected through the run.
	idle *load.Pool
}

// liveJob and liveInstance label the all-in-one's series: one target
// exposing the metrics of every service.
const (
	liveJob      = "presence"
	liveInstance = "allinone"
	// liveScrape is how often Prometheus scrapes it: often enough for a
	// run of a few minutes to draw smooth lines.
	liveScrape = 2 * time.Second
	// idleUsers stay connected through the run.
	idleUsers = 1000
)

func startLive(ctx context.Context, o options, log io.Writer) (_ *live, err error) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, errors.New("prometheus not found: apt-get install prometheus (Debian), or any Prometheus on $PATH")
	}
	dir, err := os.MkdirTemp("", "presence-dashshot-")
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	l := &live{dir: dir, key: "presence", secret: hex.EncodeToString(secret)}
	defer func() {
		if err != nil {
			l.stop()
		}
	}()

	fmt.Fprintln(log, "building the all-in-one")
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "presence"), "./allinone/cmd/presence")
	if b, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./allinone/cmd/presence (run from the repository's root): %w\n%s", err, b)
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	httpAddr, promAddr := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[3]
	l.httpURL, l.wsURL, l.prom = "http://"+httpAddr, "ws://127.0.0.1:"+ports[1]+"/connect", "http://"+promAddr
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "presence"))
	cmd.Env = append(os.Environ(),
		"PRESENCE_DATA_DIR="+filepath.Join(dir, "data"), "PRESENCE_HTTP_ADDR="+httpAddr,
		"PRESENCE_WS_ADDR=127.0.0.1:"+ports[1], "PRESENCE_NATS_ADDR=127.0.0.1:"+ports[2],
		"PRESENCE_API_KEY="+l.key, "PRESENCE_API_SECRET="+l.secret, "PRESENCE_LOG_LEVEL=warn",
		// Every client of the load comes from loopback: a connect limit
		// per address would refuse most of them.
		"PRESENCE_CONNECT_RATE_PER_IP=0")
	if l.presence, err = start(cmd, log, "presence"); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, l.presence, l.httpURL+"/readyz"); err != nil {
		return nil, fmt.Errorf("the all-in-one: %w", err)
	}

	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q]
        labels:
          instance: %s
`, liveScrape, liveScrape, liveJob, httpAddr, liveInstance)), 0o644); err != nil {
		return nil, err
	}
	cmd = exec.CommandContext(ctx, promBin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	if l.prometheus, err = start(cmd, log, "prometheus"); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, l.prometheus, l.prom+"/-/ready"); err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	fmt.Fprintf(log, "all-in-one at %s, Prometheus at %s\n", l.httpURL, l.prom)
	return l, nil
}

// proc is a process the shot started, with its end.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start starts cmd with its output prefixed on log; it gets SIGTERM (not
// SIGKILL) when its context ends, so it cleans up.
func start(cmd *exec.Cmd, log io.Writer, name string) (*proc, error) {
	w := &prefixed{w: log, prefix: name + ": "}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends p with SIGTERM and waits for it (cmd.WaitDelay bounds the wait).
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

type prefixed struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for line := range strings.Lines(string(b)) {
		if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// waitHTTP polls u until it answers 200, for up to a minute, failing at
// once if p exits.
func waitHTTP(ctx context.Context, p *proc, u string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", u, ctx.Err())
		case <-p.done:
			return fmt.Errorf("exited while starting: %v", p.err)
		case <-time.After(200 * time.Millisecond): // the probe's polling period
		}
	}
}

func (l *live) stop() {
	if l.idle != nil {
		l.idle.Close()
	}
	l.prometheus.stop()
	l.presence.stop()
	os.RemoveAll(l.dir)
}

func freePorts(n int) ([]string, error) {
	var out []string
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

// runLoad runs the load for o.duration, checks the scrape against the
// contract, and returns the shot of the run.
func (l *live) runLoad(ctx context.Context, o options, log io.Writer) (shot, error) {
	began := time.Now()
	sys := load.NewPresence(load.Target{URL: l.wsURL, Key: l.key, Secret: l.secret}, load.REST{Base: l.httpURL, Key: l.key, Secret: l.secret}, nil)
	// Users who stay connected through the run (and the picture), under
	// the churn, as a service has.
	l.idle = load.NewPool(25 * time.Second)
	names := make([]string, idleUsers)
	for i := range names {
		names[i] = fmt.Sprintf("dash-idle-%06d", i)
	}
	c := load.ConnectAll(ctx, l.idle, func(ctx context.Context, i int, user string) (load.Socket, error) {
		return sys.Member(ctx, i, user, nil)
	}, names, 64)
	fmt.Fprintf(log, "%d users connected to stay (%d failed)\n", c.Conns, c.Failed)
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	step := o.duration / 5
	var wg sync.WaitGroup
	var churned load.ChurnResult
	var churnErr error
	wg.Go(func() {
		// Rates up, then down; a step that does not hold ends the churn
		// early, and the picture shows where.
		churned, churnErr = load.Churn(ctx, sys, load.ChurnParams{Users: 400, Channels: 8, Prefix: "dash",
			Rates: []float64{20, 50, 100, 150, 50}, Step: step, MaxLag: 2 * time.Second})
	})
	var rejected, limited atomic.Int64
	wg.Go(func() { rejected.Store(badConnects(ctx, l.wsURL, l.key)) })
	wg.Go(func() { limited.Store(overLimit(ctx, l.httpURL, l.key, l.secret)) })
	fmt.Fprintf(log, "load for %s: churn of 400 more users at 20, 50, 100, 150, 50 transitions/s (%s each), a bad-token connect every second, one user over its REST limit\n", o.duration, step)
	wg.Wait()
	if churnErr != nil && !errors.Is(churnErr, context.DeadlineExceeded) {
		return shot{}, fmt.Errorf("churn: %w", churnErr)
	}
	for _, st := range churned.Steps {
		fmt.Fprintf(log, "  churn %4.0f/s: %d transitions seen, p99 %.0f ms, held %v\n", st.Rate, st.Resolved, st.P99ms, st.Held)
	}
	fmt.Fprintf(log, "  %d bad-token connects, %d requests answered 429\n", rejected.Load(), limited.Load())
	end := time.Now()

	// One more scrape after the load, so the picture ends with it.
	parent := context.WithoutCancel(ctx)
	s := newShot(l.prom, began.Add(-30*time.Second), end.Add(2*liveScrape))
	if err := s.waitScrapeAfter(parent, end); err != nil {
		return shot{}, err
	}
	if err := l.checkScrape(parent, o, log); err != nil {
		return shot{}, err
	}
	s.source = fmt.Sprintf("scraping make run's all-in-one every %s under a %s load: %d users staying connected, 400 more connecting and disconnecting at 20 to 150 transitions/s, watched; a bad-token connect every second; one user over its REST rate limit", liveScrape, o.duration.Round(time.Second), idleUsers)
	s.end = time.Now()
	return s, nil
}

// waitScrapeAfter waits until Prometheus holds a scrape of the all-in-one
// taken after t.
func (s shot) waitScrapeAfter(ctx context.Context, t time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 10*liveScrape)
	defer cancel()
	for {
		var res struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		}
		err := s.get(ctx, "/api/v1/query", url.Values{"query": {fmt.Sprintf(`timestamp(up{job=%q})`, liveJob)}}, &res)
		if err == nil && len(res.Result) == 1 {
			if v, _ := res.Result[0].Value[1].(string); v != "" {
				if ts, err := strconv.ParseFloat(v, 64); err == nil && ts > float64(t.Unix()) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no scrape of the all-in-one after the load: %v", err)
		case <-time.After(liveScrape / 4): // polling Prometheus' last scrape
		}
	}
}

// checkScrape compares the all-in-one's /metrics with the contract.
func (l *live) checkScrape(ctx context.Context, o options, log io.Writer) error {
	contract, err := dashboard.ReadContract(o.contract)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.httpURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var problems []string
	if resp.StatusCode != http.StatusOK {
		problems = append(problems, fmt.Sprintf("GET /metrics: %s", resp.Status))
	} else {
		problems = dashboard.CheckScrape(contract, body, func(m dashboard.Metric) bool { return m.From != "Prometheus" })
	}
	for _, p := range problems {
		fmt.Fprintln(log, "contract:", p)
	}
	if len(problems) > 0 && !o.allowMissing {
		return fmt.Errorf("the all-in-one's /metrics does not hold the contract (%s): %d problems; -allow-missing draws anyway", o.contract, len(problems))
	}
	return nil
}

// badConnects opens a socket with a token signed by the wrong secret
// every second until ctx ends, and counts them: the connects that are
// rejected.
func badConnects(ctx context.Context, wsURL, key string) int64 {
	d := load.NewDialer(load.Target{URL: wsURL, Key: key, Secret: "not-the-secret"}, "")
	var n int64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
		if c, err := d.Dial(ctx, fmt.Sprintf("dash-intruder-%d", n%10)); err == nil {
			c.Close() // accepted after all; the picture will show it
		}
		n++
	}
}

// overLimit has one user ask GET /users in bursts of 350 every 30 s: the
// first burst alone is more than the 300 a minute one user may ask one
// endpoint by default. It counts the answers 429.
func overLimit(ctx context.Context, httpURL, key, secret string) int64 {
	const user = "dash-eager"
	tok, err := token.ForUser(secret, user)
	if err != nil {
		return 0
	}
	payload, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": []string{user}}}})
	u := httpURL + "/users?" + url.Values{"api_key": {key}, "payload": {string(payload)}}.Encode()
	var limited int64
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		for range 350 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			req.Header.Set("Authorization", tok)
			req.Header.Set("stream-auth-type", "jwt")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return limited
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				limited++
			}
		}
		select {
		case <-ctx.Done():
			return limited
		case <-tick.C:
		}
	}
}
