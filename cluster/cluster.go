package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/presencehq/presence/cluster/probe"
	"github.com/presencehq/presence/pkg/natsauth"
)

// Config of a cluster.
type Config struct {
	// Topology to run; Default() for make cluster, Default().WithFreePorts()
	// in tests. Without(LB) when nginx is not installed.
	Topology Topology
	// BinDir holds nats-server, presence-worker, presence-gateway and
	// presence-api (see Build).
	BinDir string
	// DeployDir is the repository's deploy/ (NATS and nginx configuration).
	DeployDir string
	// DataDir holds the pid files (<name>.pid) and a directory per node
	// (JetStream store, query index, nginx configuration). Created if missing.
	DataDir string
	// APIKey and APISecret are given to every gateway and api node.
	APIKey    string
	APISecret string
	// NATSPasswords are the passwords of pkg/natsauth's roles: the NATS
	// nodes let in those users (deploy/nats/auth.conf), and each service
	// connects as its role. Missing ones are generated at Start.
	NATSPasswords natsauth.Passwords
	// Env is added to the environment of every worker, gateway and api node,
	// after the topology's own (PRESENCE_LEASE_TTL, say).
	Env map[string]string
	// Nginx is the nginx binary; empty: FindNginx.
	Nginx string
	// Log receives every process's output, each line prefixed with its name;
	// nil: os.Stdout.
	Log io.Writer
	// ReadyTimeout bounds each wait for nodes to be ready; default 60 s.
	ReadyTimeout time.Duration
}

// Cluster is a running topology.
type Cluster struct {
	cfg   Config
	top   Topology
	out   *output
	nginx string

	mu     sync.Mutex
	procs  map[string]*process
	closed bool
}

// Start checks the binaries and ports, then starts the NATS nodes and waits
// until JetStream has a meta leader every node is current with; then the
// first worker (which sets up the streams and buckets), the other workers,
// gateways and api nodes, and the load balancer, each wave ready before the
// next (startWaves). ctx bounds the start only. On error everything started
// is stopped.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	top := cfg.Topology
	if err := top.Check(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = os.Stdout
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = time.Minute
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, err
	}
	if cfg.DeployDir, err = filepath.Abs(cfg.DeployDir); err != nil {
		return nil, err
	}
	if cfg.BinDir, err = filepath.Abs(cfg.BinDir); err != nil {
		return nil, err
	}
	if len(top.Of(Gateway))+len(top.Of(API)) > 0 && (cfg.APIKey == "" || cfg.APISecret == "") {
		return nil, errors.New("cluster: an API key and secret are required")
	}
	cfg.NATSPasswords = maps.Clone(cfg.NATSPasswords)
	if cfg.NATSPasswords == nil {
		cfg.NATSPasswords = natsauth.Passwords{}
	}
	for _, r := range natsauth.Roles {
		if cfg.NATSPasswords[r.Name] == "" {
			buf := make([]byte, 24)
			if _, err := rand.Read(buf); err != nil {
				return nil, err
			}
			cfg.NATSPasswords[r.Name] = hex.EncodeToString(buf)
		}
	}
	c := &Cluster{cfg: cfg, top: top, procs: map[string]*process{}}
	var names []string
	for _, n := range top.Nodes {
		names = append(names, n.Name)
	}
	c.out = newOutput(cfg.Log, names)
	if err := c.preflight(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for _, wave := range startWaves(top) {
		began := time.Now()
		var names []string
		for _, n := range wave {
			if err := c.start(n); err != nil {
				return nil, err
			}
			names = append(names, n.Name)
		}
		if err := c.waitReady(ctx, wave...); err != nil {
			return nil, err
		}
		c.out.Printf("ready in %.1fs: %s", time.Since(began).Seconds(), strings.Join(names, " "))
	}
	return c, nil
}

// startWaves orders the start: NATS; then the first worker alone, which
// creates the streams and buckets (services creating the same replicated
// buckets at once on a new cluster time out: every store.Setup but the
// first must find them made); then the other workers, the gateways and api
// nodes together; then the load balancer. Each wave is ready before the next
// starts. docker-compose.yml orders its services the same way (depends_on).
func startWaves(t Topology) [][]Node {
	var waves [][]Node
	add := func(nodes ...Node) {
		if len(nodes) > 0 {
			waves = append(waves, nodes)
		}
	}
	add(t.Of(NATS)...)
	workers := t.Of(Worker)
	if len(workers) > 0 {
		add(workers[0])
		workers = workers[1:]
	}
	add(append(append(workers, t.Of(Gateway)...), t.Of(API)...)...)
	add(t.Of(LB)...)
	return waves
}

// preflight checks what Start needs before anything runs: binaries, deploy
// files, free ports, the data directory.
func (c *Cluster) preflight() error {
	var missing []string
	for _, n := range c.top.Nodes {
		if n.Kind == LB {
			p, err := FindNginx(c.cfg.Nginx)
			if err != nil {
				return fmt.Errorf("cluster: the load balancer needs nginx: %w", err)
			}
			c.nginx = p
			continue
		}
		bin := filepath.Join(c.cfg.BinDir, n.Kind.Binary())
		if _, err := os.Stat(bin); err != nil && !slices.Contains(missing, bin) {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cluster: missing %v (make cluster builds them; see cluster.Build)", missing)
	}
	for _, f := range []string{c.natsConf(), c.nginxTemplate()} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("cluster: %w (is DeployDir the repository's deploy/?)", err)
		}
	}
	for _, n := range c.top.Nodes {
		for _, port := range n.Ports() {
			l, err := net.Listen("tcp", hostPort(Loopback.Listen, port))
			if err != nil {
				return fmt.Errorf("cluster: %s needs port %d, which is in use (is make run, or another make cluster, running?): %w", n.Name, port, err)
			}
			l.Close()
		}
	}
	return os.MkdirAll(c.cfg.DataDir, 0o755)
}

func (c *Cluster) natsConf() string { return filepath.Join(c.cfg.DeployDir, "nats", "nats.conf") }
func (c *Cluster) nginxTemplate() string {
	return filepath.Join(c.cfg.DeployDir, "nginx", "presence.conf.template")
}

// NodeEnv is the environment the cluster gives node name on top of its own:
// the topology's (Topology.Env, on loopback), credentials, data directories
// and Config.Env.
func (cfg Config) NodeEnv(name string) (map[string]string, error) {
	env, err := cfg.Topology.Env(name, Loopback)
	if err != nil {
		return nil, err
	}
	node, _ := cfg.Topology.Node(name)
	dir := filepath.Join(cfg.DataDir, name)
	switch node.Kind {
	case NATS:
		env["NATS_STORE_DIR"] = dir
		for _, r := range natsauth.Roles {
			env[r.PasswordVar()] = cfg.NATSPasswords[r.Name]
		}
		return env, nil
	case LB:
		return env, nil
	}
	env["PRESENCE_NATS_PASSWORD"] = cfg.NATSPasswords[RoleOf(node.Kind).Name]
	switch node.Kind {
	case Gateway:
		env["PRESENCE_API_KEY"] = cfg.APIKey
		env["PRESENCE_API_SECRET"] = cfg.APISecret
	case API:
		env["PRESENCE_API_KEY"] = cfg.APIKey
		env["PRESENCE_API_SECRET"] = cfg.APISecret
		env["PRESENCE_INDEX_DIR"] = dir
	}
	maps.Copy(env, cfg.Env)
	return env, nil
}

// start starts node (not waiting for it to be ready).
func (c *Cluster) start(n Node) error {
	env, err := c.cfg.NodeEnv(n.Name)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.cfg.DataDir, n.Name)
	if n.Kind != Gateway && n.Kind != Worker { // those keep nothing on disk
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	path, args := filepath.Join(c.cfg.BinDir, n.Kind.Binary()), []string(nil)
	switch n.Kind {
	case NATS:
		args = []string{"-c", c.natsConf()}
	case LB:
		main, err := writeNginxConfig(dir, c.nginxTemplate(), env)
		if err != nil {
			return err
		}
		path, args = c.nginx, []string{"-e", "stderr", "-p", dir, "-c", main}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cluster: closed")
	}
	if p := c.procs[n.Name]; p != nil && !p.exited() {
		return fmt.Errorf("cluster: %s is running", n.Name)
	}
	p, err := spawn(n, path, args, env, c.out, pidFile(c.cfg.DataDir, n.Name), c.exited)
	if err != nil {
		return err
	}
	c.procs[n.Name] = p
	c.out.Printf("started %s (pid %d)", n.Name, p.cmd.Process.Pid)
	return nil
}

// exited reports a process's end: a crash loudly, an asked-for stop quietly.
func (c *Cluster) exited(p *process) {
	p.mu.Lock()
	asked := p.stopping
	p.mu.Unlock()
	status := "exited"
	if p.err != nil {
		status = p.err.Error()
	}
	if asked {
		c.out.Printf("%s stopped (%s)", p.node.Name, status)
		return
	}
	c.out.Printf("%s EXITED UNEXPECTEDLY (%s); the others keep running", p.node.Name, status)
}

// waitReady waits until every node's probe passes, failing early when one of
// them exits.
func (c *Cluster) waitReady(ctx context.Context, nodes ...Node) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	for _, n := range nodes {
		args, err := c.top.Probe(n.Name, Loopback)
		if err != nil {
			return err
		}
		p := c.proc(n.Name)
		pause := 50 * time.Millisecond
		for {
			if p == nil || p.exited() {
				return fmt.Errorf("cluster: %s exited while starting: %v", n.Name, exitErr(p))
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err = probe.Check(pctx, args)
			pcancel()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("cluster: %s not ready: %w (last check: %v)", n.Name, ctx.Err(), err)
			case <-p.done:
			case <-time.After(pause):
			}
			pause = min(2*pause, 500*time.Millisecond)
		}
	}
	return nil
}

func exitErr(p *process) error {
	if p == nil {
		return errors.New("not started")
	}
	if p.err == nil {
		return errors.New("exit status 0")
	}
	return p.err
}

func (c *Cluster) proc(name string) *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

func (c *Cluster) running(name string) (*process, error) {
	if _, ok := c.top.Node(name); !ok {
		return nil, fmt.Errorf("cluster: no node %q", name)
	}
	p := c.proc(name)
	if p == nil || p.exited() {
		return nil, fmt.Errorf("cluster: %s is not running", name)
	}
	return p, nil
}

// stopTimeout is how long a node may take to stop on SIGTERM before it is
// killed: a gateway drains its sockets over its drain window (10 s by
// default) first.
func stopTimeout(k Kind) time.Duration {
	if k == Gateway {
		return 30 * time.Second
	}
	return 15 * time.Second
}

// Pid is the process id of node name, 0 when it is not running.
func (c *Cluster) Pid(name string) int {
	p, err := c.running(name)
	if err != nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running says whether node name is running.
func (c *Cluster) Running(name string) bool { return c.Pid(name) != 0 }

// Kill kills node name at once (SIGKILL, like kill -9) and waits until it is
// gone.
func (c *Cluster) Kill(name string) error {
	p, err := c.running(name)
	if err != nil {
		return err
	}
	return p.stop(syscall.SIGKILL, 0)
}

// Stop stops node name gracefully (SIGTERM; a gateway drains) and waits; a
// node that does not stop in time is killed.
func (c *Cluster) Stop(name string) error {
	p, err := c.running(name)
	if err != nil {
		return err
	}
	return p.stop(syscall.SIGTERM, stopTimeout(p.node.Kind))
}

// Restart stops node name if it is running, starts it again with the same
// settings (and data) and waits until it is ready.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	n, ok := c.top.Node(name)
	if !ok {
		return fmt.Errorf("cluster: no node %q", name)
	}
	if c.Running(name) {
		if err := c.Stop(name); err != nil {
			return err
		}
	}
	if err := c.start(n); err != nil {
		return err
	}
	return c.waitReady(ctx, n)
}

// Close stops every node in order: the load balancer, then gateways and api
// nodes (gateways drain, publishing their connections' ends), then workers
// (which apply them), then NATS. Each wave gets SIGTERM and is killed if it
// does not stop in time. Calling it again does nothing.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	waves := [][]Kind{{LB}, {Gateway, API}, {Worker}, {NATS}}
	for _, wave := range waves {
		var wg sync.WaitGroup
		for _, n := range c.top.Nodes {
			if !slices.Contains(wave, n.Kind) {
				continue
			}
			p := c.proc(n.Name)
			if p == nil || p.exited() {
				continue
			}
			wg.Go(func() {
				if err := p.stop(syscall.SIGTERM, stopTimeout(n.Kind)); err != nil {
					c.out.Printf("%v", err)
				}
			})
		}
		wg.Wait()
	}
}

// KillAll kills every node at once (a second Ctrl-C).
func (c *Cluster) KillAll() {
	c.mu.Lock()
	c.closed = true
	procs := slices.Collect(maps.Values(c.procs))
	c.mu.Unlock()
	for _, p := range procs {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		_ = p.signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		<-p.done
	}
}

// Topology is what the cluster runs.
func (c *Cluster) Topology() Topology { return c.top }

// DataDir is the cluster's data directory (pid files: <name>.pid).
func (c *Cluster) DataDir() string { return c.cfg.DataDir }

// Printf writes a line to the cluster's log, prefixed "cluster".
func (c *Cluster) Printf(format string, args ...any) { c.out.Printf(format, args...) }

// NATSURL is the comma-separated client URL of every NATS node.
func (c *Cluster) NATSURL() string { return c.top.NATSURL(Loopback) }

// NATSURLAs is NATSURL with role r's credentials in each URL.
func (c *Cluster) NATSURLAs(r natsauth.Role) string {
	return withUser(c.NATSURL(), r, c.cfg.NATSPasswords[r.Name])
}

// URLAs is node's URL (a NATS node's) with role r's credentials.
func (c *Cluster) URLAs(name string, r natsauth.Role) string {
	return withUser(c.URL(name), r, c.cfg.NATSPasswords[r.Name])
}

func withUser(urls string, r natsauth.Role, password string) string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		out = append(out, strings.Replace(u, "nats://", "nats://"+url.UserPassword(r.User(), password).String()+"@", 1))
	}
	return strings.Join(out, ",")
}

// RoleOf is the NATS role (pkg/natsauth) a kind of node connects as.
func RoleOf(k Kind) natsauth.Role {
	switch k {
	case Gateway:
		return natsauth.Gateway
	case API:
		return natsauth.API
	case Worker:
		return natsauth.Worker
	}
	return natsauth.Admin
}

// URL is the base URL of node name: nats://… for NATS, http://… for a
// gateway (/connect), an api node (REST), a worker (/metrics) or the load
// balancer (REST and /connect); "" for an unknown name. Gateways, api nodes
// and workers also serve /metrics, /healthz and /readyz there.
func (c *Cluster) URL(name string) string {
	n, ok := c.top.Node(name)
	if !ok || n.Port == 0 {
		return ""
	}
	scheme := "http://"
	if n.Kind == NATS {
		scheme = "nats://"
	}
	return scheme + hostPort(Loopback.Listen, n.Port)
}

// ConnectURL is the WebSocket /connect URL of a gateway, or the load
// balancer's /connect-only port; "" for other nodes.
func (c *Cluster) ConnectURL(name string) string {
	n, ok := c.top.Node(name)
	switch {
	case !ok:
		return ""
	case n.Kind == Gateway:
		return "ws://" + hostPort(Loopback.Listen, n.Port) + "/connect"
	case n.Kind == LB:
		return "ws://" + hostPort(Loopback.Listen, n.WSPort) + "/connect"
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
