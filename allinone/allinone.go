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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/gateway"
	"github.com/presencehq/presence/pkg/natsconn"
	"github.com/presencehq/presence/pkg/natsserver"
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
}

// RegisterFlags binds the config to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for JetStream data, the query index and the generated secret")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":3030", "REST address (also serves /connect)")
	fs.StringVar(&c.WSAddr, "ws-addr", ":8800", "WebSocket /connect address (the SDK's default)")
	fs.StringVar(&c.NATSAddr, "nats-addr", ":4222", "client address of the embedded NATS server")
	fs.BoolVar(&c.NATSSyncAlways, "nats-sync-always", false, "fsync each JetStream write before acknowledging it, so acknowledged writes survive a power loss or kernel crash, not only a crash of the process (cost: BENCHMARKS.md); off: nats-server's default, fsync every 2 minutes")
	fs.StringVar(&c.APIKey, "api-key", "presence", "API key clients must send")
	fs.StringVar(&c.APISecret, "api-secret", "", "API secret signing tokens; generated and kept in the data dir when empty")
	fs.StringVar(&c.APISecretPrevious, "api-secret-previous", "", "previous API secret, still accepted while rotating")
	fs.BoolVar(&c.DevTokens, "dev-tokens", false, "accept unsigned development tokens (never in production)")
	fs.StringVar(&c.NodeName, "node-name", "gateway-1", "gateway node name")
	fs.DurationVar(&c.ActiveInterval, "active-interval", 15*time.Minute, "how often a live connection refreshes last_active")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve Go's profiles (/debug/pprof/) on this address; off when empty; keep it on loopback")
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
	p = &Presence{cfg: cfg, log: log, Secret: secret}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	p.ns, err = natsserver.Start(natsserver.Options{
		Addr: cfg.NATSAddr, StoreDir: filepath.Join(cfg.DataDir, "jetstream"), SyncAlways: cfg.NATSSyncAlways,
	})
	if err != nil {
		return nil, err
	}
	dial := func(name string) (*nats.Conn, error) {
		nc, err := natsconn.Connect(p.ns.ClientURL(), name, log)
		if err == nil {
			p.conns = append(p.conns, nc)
		}
		return nc, err
	}
	if cfg.DevTokens {
		log.Warn("DEVELOPMENT TOKENS ARE ON: anyone can connect as any user without a signed token. Never do this in production.")
	}

	wnc, err := dial("presence-worker")
	if err != nil {
		return nil, err
	}
	wlnc, err := dial("presence-worker leases")
	if err != nil {
		return nil, err
	}
	if p.worker, err = worker.New(ctx, worker.Config{Name: "worker-1", ActiveInterval: cfg.ActiveInterval}, wnc, log, worker.WithLeaseConn(wlnc)); err != nil {
		return nil, err
	}
	gnc, err := dial("presence-gateway")
	if err != nil {
		return nil, err
	}
	lnc, err := dial("presence-gateway lease")
	if err != nil {
		return nil, err
	}
	p.gateway, err = gateway.New(ctx, gateway.Config{
		APIKey: cfg.APIKey, APISecret: secret, APISecretPrevious: cfg.APISecretPrevious,
		DevTokens: cfg.DevTokens, NodeName: cfg.NodeName, ActiveInterval: cfg.ActiveInterval,
	}, gnc, log, gateway.WithLeaseConn(lnc))
	if err != nil {
		return nil, err
	}
	anc, err := dial("presence-api")
	if err != nil {
		return nil, err
	}
	p.api, err = api.New(ctx, api.Config{
		APIKey: cfg.APIKey, APISecret: secret, APISecretPrevious: cfg.APISecretPrevious,
		DevTokens: cfg.DevTokens, IndexDir: filepath.Join(cfg.DataDir, "index"), NodeName: "api-1",
	}, anc, log)
	if err != nil {
		return nil, err
	}

	rest := http.NewServeMux()
	rest.Handle("/connect", p.gateway.Handler())
	rest.Handle("/", p.api.Handler())
	if err := p.serve(cfg.HTTPAddr, rest); err != nil {
		return nil, err
	}
	if err := p.serve(cfg.WSAddr, p.gateway.Handler()); err != nil {
		return nil, err
	}
	if cfg.PprofAddr != "" {
		// Profiles for tuning (make bench saves them): never on the
		// public listeners.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		if err := p.serve(cfg.PprofAddr, mux); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Presence) serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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

// NATSURL is the embedded NATS server's client URL.
func (p *Presence) NATSURL() string {
	return "nats://" + reachable(p.ns.Addr())
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
  NATS              %s   (try: nats sub 'presence.events.>')
  API key           %s
  API secret        %s
  Mint a user token: go run ./allinone/cmd/presence token <user_id>
`, p.HTTPURL(), p.WSURL(), p.NATSURL(), cfg.APIKey, p.Secret)
	if cfg.DevTokens {
		fmt.Fprintln(out, "  Development tokens are ON (client.devToken(id) works). Never in production.")
	}
}

func secretFile(dataDir string) string { return filepath.Join(dataDir, "api-secret") }

// loadSecret returns the configured secret, or the one kept in the data dir,
// or a new one (saved there so tokens keep working across restarts).
func loadSecret(cfg Config) (secret string, generated bool, err error) {
	if cfg.APISecret != "" {
		return cfg.APISecret, false, nil
	}
	if b, err := os.ReadFile(secretFile(cfg.DataDir)); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), false, nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", false, err
	}
	secret = hex.EncodeToString(buf)
	if err := os.WriteFile(secretFile(cfg.DataDir), []byte(secret+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return secret, true, nil
}

// Secret returns the API secret the runner would use with cfg (for minting
// tokens from the command line).
func Secret(cfg Config) (string, error) {
	s, _, err := loadSecret(cfg)
	return s, err
}
