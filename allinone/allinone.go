// Package allinone runs the whole of Presence in one process: an embedded
// nats-server with JetStream on disk, a gateway, a presence worker and an api
// node, each on its own NATS connection exactly as when they run apart. One
// HTTP port serves REST and /connect; a second serves /connect alone (the
// SDK's default WebSocket port).
package allinone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/allinone/demo"
	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/gateway"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/ops"
	worker "github.com/presencehq/presence/presence-worker"
)

// Config of the all-in-one runner.
type Config struct {
	DataDir           string
	HTTPAddr          string
	WSAddr            string
	NATSAddr          string
	NATSSyncAlways    bool
	APIKey            string
	APISecret         string
	APISecretPrevious string
	DevTokens         bool
	NodeName          string
	ActiveInterval    time.Duration
	PprofAddr         string
	// DemoSDK is the stream-chat bundle of the demo page (/demo/), which
	// make demo-sdk builds: Presence does not ship the SDK (allinone/demo).
	DemoSDK string
	// The gateway's connect limit per source address (gateway.Config) and
	// the api's rate limits (api.Config). Zero is no limit; the flags
	// default to the services' own defaults.
	ConnectRatePerIP  float64
	ConnectBurstPerIP int
	TrustedProxies    string
	RateLimitUser     int
	RateLimitAPIKey   int
}

// RegisterFlags binds the config to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for JetStream data, the query index and the generated secret")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":3030", "REST address (also serves /connect)")
	fs.StringVar(&c.WSAddr, "ws-addr", ":8800", "WebSocket /connect address (the SDK's default)")
	fs.StringVar(&c.NATSAddr, "nats-addr", "127.0.0.1:4222", "client address of the embedded NATS server (loopback only by default; e.g. :4222 exposes it)")
	fs.BoolVar(&c.NATSSyncAlways, "nats-sync-always", false, "fsync each JetStream write before acknowledging it, so acknowledged writes survive a power loss or kernel crash, not only a crash of the process (cost: BENCHMARKS.md); off: nats-server's default, fsync every 2 minutes")
	fs.StringVar(&c.APIKey, "api-key", "presence", "API key clients must send")
	fs.StringVar(&c.APISecret, "api-secret", "", "API secret signing tokens; generated and kept in the data dir when empty")
	fs.StringVar(&c.APISecretPrevious, "api-secret-previous", "", "previous API secret, still accepted while rotating")
	fs.BoolVar(&c.DevTokens, "dev-tokens", false, "accept unsigned development tokens (never in production)")
	fs.StringVar(&c.NodeName, "node-name", "gateway-1", "gateway node name")
	fs.DurationVar(&c.ActiveInterval, "active-interval", 15*time.Minute, "how often a live connection refreshes last_active")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve Go's profiles (/debug/pprof/) on this address; off when empty; keep it on loopback")
	fs.StringVar(&c.DemoSDK, "demo-sdk", "./e2e/demo-sdk/stream-chat.js", "the demo page's stream-chat SDK bundle, served at /demo/stream-chat.js: make demo-sdk builds it from npm, as Presence does not ship the SDK (its licence); without it the page says so. The default is where make run, from the repository's root, finds it")

	// The limits are the gateway's and the api's own settings: the same
	// names, defaults and words.
	var gd gateway.Config
	gfs := flag.NewFlagSet("presence-gateway", flag.ContinueOnError)
	gd.RegisterFlags(gfs)
	fs.Float64Var(&c.ConnectRatePerIP, "connect-rate-per-ip", gd.ConnectRatePerIP, gfs.Lookup("connect-rate-per-ip").Usage)
	fs.IntVar(&c.ConnectBurstPerIP, "connect-burst-per-ip", gd.ConnectBurstPerIP, gfs.Lookup("connect-burst-per-ip").Usage)
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", gd.TrustedProxies, gfs.Lookup("trusted-proxies").Usage)
	var ad api.Config
	afs := flag.NewFlagSet("presence-api", flag.ContinueOnError)
	ad.RegisterFlags(afs)
	fs.IntVar(&c.RateLimitUser, "rate-limit-user", ad.RateLimitUser, afs.Lookup("rate-limit-user").Usage)
	fs.IntVar(&c.RateLimitAPIKey, "rate-limit-api-key", ad.RateLimitAPIKey, afs.Lookup("rate-limit-api-key").Usage)
}

// Presence is a running all-in-one service.
type Presence struct {
	cfg     Config
	log     *slog.Logger
	ns      *server.Server
	conns   []*nats.Conn
	worker  *worker.Worker
	gateway *gateway.Gateway
	api     *api.Server
	servers []*http.Server
	addrs   []net.Addr
	wg      sync.WaitGroup
	// Secret is the API secret in use.
	Secret string
	// natsPasswords are the embedded NATS server's users' passwords, by
	// role (pkg/natsauth).
	natsPasswords natsauth.Passwords
}

// Start starts everything and returns once it serves.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (p *Presence, err error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	secret, generated, err := loadSecret(cfg)
	if err != nil {
		return nil, err
	}
	if generated {
		log.Warn("no PRESENCE_API_SECRET set: generated one and saved it in the data dir", "file", secretFile(cfg.DataDir))
	}
	started := &Presence{cfg: cfg, log: log, Secret: secret}
	p = started
	defer func() {
		if err != nil {
			started.Close() // p is nil by now
		}
	}()
	if p.natsPasswords, err = natsPasswords(cfg.DataDir); err != nil {
		return nil, err
	}
	users, err := natsauth.ServerUsers(p.natsPasswords)
	if err != nil {
		return nil, err
	}
	p.ns, err = natsserver.Start(natsserver.Options{
		Addr: cfg.NATSAddr, StoreDir: filepath.Join(cfg.DataDir, "jetstream"), SyncAlways: cfg.NATSSyncAlways,
		Users: users, Log: log.With("service", "nats"),
	})
	if err != nil {
		return nil, err
	}
	dial := func(name string, r natsauth.Role) (*nats.Conn, error) {
		nc, err := natsconn.Connect(p.ns.ClientURL(), name, log, natsconn.As(r, "", p.natsPasswords[r.Name]))
		if err == nil {
			p.conns = append(p.conns, nc)
		}
		return nc, err
	}
	if cfg.DevTokens {
		log.Warn("DEVELOPMENT TOKENS ARE ON: anyone can connect as any user without a signed token. Never do this in production.")
	}

	wnc, err := dial("presence-worker", natsauth.Worker)
	if err != nil {
		return nil, err
	}
	wlnc, err := dial("presence-worker leases", natsauth.Worker)
	if err != nil {
		return nil, err
	}
	// One registry for the three services: /metrics shows the process.
	reg := ops.NewRegistry()
	// Every line says which service and node it comes from, as when they
	// run apart.
	serviceLog := func(service, node string) *slog.Logger { return log.With("service", service, "node", node) }
	if p.worker, err = worker.New(ctx, worker.Config{Name: "worker-1", ActiveInterval: cfg.ActiveInterval}, wnc, serviceLog("worker", "worker-1"), worker.WithLeaseConn(wlnc), worker.WithRegistry(reg)); err != nil {
		return nil, err
	}
	gnc, err := dial("presence-gateway", natsauth.Gateway)
	if err != nil {
		return nil, err
	}
	lnc, err := dial("presence-gateway lease", natsauth.Gateway)
	if err != nil {
		return nil, err
	}
	p.gateway, err = gateway.New(ctx, gateway.Config{
		APIKey: cfg.APIKey, APISecret: secret, APISecretPrevious: cfg.APISecretPrevious,
		DevTokens: cfg.DevTokens, NodeName: cfg.NodeName, ActiveInterval: cfg.ActiveInterval,
		ConnectRatePerIP: cfg.ConnectRatePerIP, ConnectBurstPerIP: cfg.ConnectBurstPerIP, TrustedProxies: cfg.TrustedProxies,
	}, gnc, serviceLog("gateway", cfg.NodeName), gateway.WithLeaseConn(lnc), gateway.WithRegistry(reg))
	if err != nil {
		return nil, err
	}
	anc, err := dial("presence-api", natsauth.API)
	if err != nil {
		return nil, err
	}
	p.api, err = api.New(ctx, api.Config{
		APIKey: cfg.APIKey, APISecret: secret, APISecretPrevious: cfg.APISecretPrevious,
		DevTokens: cfg.DevTokens, IndexDir: filepath.Join(cfg.DataDir, "index"), NodeName: "api-1",
		RateLimitUser: cfg.RateLimitUser, RateLimitAPIKey: cfg.RateLimitAPIKey,
	}, anc, serviceLog("api", "api-1"), api.WithRegistry(reg))
	if err != nil {
		return nil, err
	}

	rest := http.NewServeMux()
	rest.Handle("/connect", p.gateway.Handler())
	rest.Handle("/demo/", demo.Handler(demo.Config{APIKey: cfg.APIKey, APISecret: secret, DevTokens: cfg.DevTokens, API: p.api.Handler(), SDKFile: cfg.DemoSDK}))
	rest.Handle("/", p.api.Handler())
	// The process's metrics and probes: ready when all three services are.
	ops.Handle(rest, reg, ops.All(p.worker.NotReady, p.gateway.NotReady, p.api.NotReady))
	// Each port with the bounds of the service it serves (/connect on the
	// REST port is safe with the api's: see gateway.NewHTTPServer).
	if err := p.serve(cfg.HTTPAddr, api.NewHTTPServer("", rest)); err != nil {
		return nil, err
	}
	if err := p.serve(cfg.WSAddr, gateway.NewHTTPServer(p.gateway.Handler())); err != nil {
		return nil, err
	}
	if cfg.PprofAddr != "" {
		// Profiles for tuning (make bench saves them): never on the
		// public listeners.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		if err := p.serve(cfg.PprofAddr, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Presence) serve(addr string, srv *http.Server) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.servers = append(p.servers, srv)
	p.addrs = append(p.addrs, ln.Addr())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("http server", "addr", addr, "err", err)
		}
	}()
	return nil
}

// HTTPURL is the base URL for the SDK (REST and /connect).
func (p *Presence) HTTPURL() string { return "http://" + reachable(p.addrs[0]) }

// WSURL is the URL of the dedicated WebSocket port.
func (p *Presence) WSURL() string { return "ws://" + reachable(p.addrs[1]) }

// NATSURL is the embedded NATS server's client URL, without credentials.
func (p *Presence) NATSURL() string {
	return "nats://" + reachable(p.ns.Addr())
}

// NATSURLAs is NATSURL with role r's credentials in it.
func (p *Presence) NATSURLAs(r natsauth.Role) string {
	return "nats://" + url.UserPassword(r.User(), p.natsPasswords[r.Name]).String() + "@" + reachable(p.ns.Addr())
}

// reachable turns a listener address into one a local client can dial: a
// wildcard host ("[::]", "0.0.0.0") becomes localhost.
func reachable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// Close shuts everything down in order: stop accepting, drain the gateway
// (clients reconnect elsewhere or later), let the worker apply the closes,
// then stop the api and NATS.
func (p *Presence) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range p.servers {
		_ = s.Shutdown(ctx)
	}
	p.wg.Wait()
	if p.gateway != nil {
		p.gateway.Close()
	}
	if p.worker != nil {
		p.worker.Close()
	}
	if p.api != nil {
		_ = p.api.Close()
	}
	for _, nc := range p.conns {
		_ = nc.Drain()
	}
	if p.ns != nil {
		p.ns.Shutdown()
		p.ns.WaitForShutdown()
	}
}

// Run starts Presence, prints how to use it and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	p, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	printBanner(out, cfg, p)
	<-ctx.Done()
	log.Info("shutting down")
	p.Close()
	return nil
}

func printBanner(out io.Writer, cfg Config, p *Presence) {
	fmt.Fprintf(out, `
Presence is running.
  REST + WebSocket  %s   (point the SDK here: new StreamChat(key, {baseURL: ...}))
  WebSocket         %s/connect
  NATS              %s
    read-only user  %s (password in %s)
    try:            nats sub --server '%s' 'presence.events.>'
  API key           %s
  API secret        %s
  Mint a user token: go run ./allinone/cmd/presence token <user_id>
`, p.HTTPURL(), p.WSURL(), p.NATSURL(), natsauth.Reader.User(), passwordFile(cfg.DataDir, natsauth.Reader),
		p.NATSURLAs(natsauth.Reader), cfg.APIKey, p.Secret)
	switch _, err := demo.SDKVersion(cfg.DemoSDK); {
	case err != nil:
		fmt.Fprintf(out, "  Demo page         %s/demo/\n    not ready:      %v\n", p.HTTPURL(), err)
	case cfg.DevTokens:
		fmt.Fprintf(out, "  Demo page         %s/demo/   (open it in two browser tabs)\n", p.HTTPURL())
	default:
		fmt.Fprintf(out, "  Demo page         %s/demo/   (needs development tokens: make demo, on your own machine only)\n", p.HTTPURL())
	}
	if cfg.DevTokens {
		fmt.Fprintln(out, "  Development tokens are ON (client.devToken(id) works). Never in production.")
	}
}

func secretFile(dataDir string) string { return filepath.Join(dataDir, "api-secret") }

func passwordFile(dataDir string, r natsauth.Role) string {
	return filepath.Join(dataDir, "nats-"+r.Name+"-password")
}

// natsPasswords are the embedded server's passwords: new ones at every start
// for the services inside this process, and for the reader and admin users
// the ones kept in the data dir (made on first start), so the tools of
// other services keep working across restarts.
func natsPasswords(dataDir string) (natsauth.Passwords, error) {
	pw := natsauth.Passwords{}
	for _, r := range natsauth.Roles {
		var err error
		if r.Name == natsauth.Reader.Name || r.Name == natsauth.Admin.Name {
			pw[r.Name], _, err = keptSecret(passwordFile(dataDir, r))
		} else {
			pw[r.Name], err = randomHex()
		}
		if err != nil {
			return nil, err
		}
	}
	return pw, nil
}

func randomHex() (string, error) {
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(buf), nil
}

// keptSecret returns the secret in file, or makes one and saves it there.
func keptSecret(file string) (secret string, generated bool, err error) {
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), false, nil
	}
	if secret, err = randomHex(); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return secret, true, nil
}

// loadSecret returns the configured secret, or the one kept in the data dir,
// or a new one (saved there so tokens keep working across restarts).
func loadSecret(cfg Config) (secret string, generated bool, err error) {
	if cfg.APISecret != "" {
		return cfg.APISecret, false, nil
	}
	return keptSecret(secretFile(cfg.DataDir))
}

// Secret returns the API secret the runner would use with cfg (for minting
// tokens from the command line).
func Secret(cfg Config) (string, error) {
	s, _, err := loadSecret(cfg)
	return s, err
}
