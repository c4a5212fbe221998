// Package gateway is the WebSocket edge of Presence: it checks tokens, answers
// the SDK's connect and health checks, publishes connection opened/closed to
// JetStream, and relays presence events to the connections watching them.
// A gateway holds no state another node needs: everything it knows dies with
// its connections, and its node lease tells the workers when that happened.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
	"github.com/presencehq/presence/pkg/ops"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/token"

	"github.com/presencehq/presence/gateway/socket"
)

// Gateway is one gateway node.
type Gateway struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream
	st  *store.Store
	// leases is the nodes bucket on the lease's own NATS connection (see
	// WithLeaseConn), leaseNC that connection; leaseRev is the revision of
	// the node's lease record as last written.
	leases   jetstream.KeyValue
	leaseNC  *nats.Conn
	leaseRev atomic.Uint64
	tokens   *token.Checker
	relay    *relay
	sockets  *socket.Server
	// epoch tells this run of the node apart from earlier runs under the
	// same name (I6); it changes again if the node loses its lease.
	epoch   atomic.Uint64
	seq     atomic.Uint64
	connect *rateLimit
	// perAddr bounds each source address's connects (nil: no bound); the
	// source is read from X-Forwarded-For behind a trusted proxy.
	perAddr *addrLimit
	trusted []netip.Prefix
	// admitting holds a slot per connect under way (ConnectInFlight);
	// connectsWaiting counts connects waiting for one.
	admitting       chan struct{}
	connectsWaiting atomic.Int64
	// registry holds the node's metrics; the same one serves /metrics.
	registry *prometheus.Registry
	metrics  *metrics

	mu       sync.Mutex
	conns    map[string]*conn
	draining bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // background loops
	connWG sync.WaitGroup // connection handlers
}

// Option adjusts a gateway at New.
type Option func(*options)

type options struct {
	leaseConn *nats.Conn
	registry  *prometheus.Registry
}

// WithLeaseConn renews the node's lease over its own NATS connection, so a
// flood of relayed events or connection events queued on the main one never
// delays a renewal (I4: a live gateway never loses its lease). Run uses it.
func WithLeaseConn(nc *nats.Conn) Option { return func(o *options) { o.leaseConn = nc } }

// WithRegistry registers the node's metrics on reg and serves reg on
// /metrics (the all-in-one shares one among its services). Without it the
// node has a registry of its own.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// New starts a gateway node on nc: it announces its new epoch, starts its
// lease and watch registry. Serve its Handler; call Close to drain.
func New(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger, opts ...Option) (*Gateway, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg.defaults()
	if err := subject.CheckNode(cfg.NodeName); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if cfg.APISecret == "" {
		return nil, errors.New("gateway: an API secret is required")
	}
	trusted, err := parseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := store.Setup(ctx, js, store.Options{Replicas: cfg.Replicas, ActiveInterval: cfg.ActiveInterval, SkipChannelTypes: true})
	if err != nil {
		return nil, err
	}
	leases, err := st.NodesOn(ctx, o.leaseConn)
	if err != nil {
		return nil, err
	}
	sockets, err := socket.NewServer(socket.Options{
		MaxMessage:   maxMessage,
		QueueLimit:   cfg.SendQueue,
		PingInterval: cfg.PingInterval,
		PingTimeout:  cfg.PingTimeout,
		IdleTimeout:  cfg.HealthTimeout,
		FrameRate:    cfg.ClientFrameRate,
		FrameBurst:   cfg.ClientFrameBurst,
	})
	if err != nil {
		return nil, err
	}
	leaseNC := nc
	if o.leaseConn != nil {
		leaseNC = o.leaseConn
	}
	g := &Gateway{
		leases:    leases,
		sockets:   sockets,
		leaseNC:   leaseNC,
		cfg:       cfg,
		log:       log,
		nc:        nc,
		js:        js,
		st:        st,
		tokens:    token.NewChecker(cfg.APISecret, token.WithPreviousSecret(cfg.APISecretPrevious), token.WithDevTokens(cfg.DevTokens)),
		conns:     map[string]*conn{},
		connect:   newRateLimit(cfg.ConnectRate, cfg.ConnectBurst),
		admitting: make(chan struct{}, cfg.ConnectInFlight),
		trusted:   trusted,
	}
	g.registry = o.registry
	if g.registry == nil {
		g.registry = ops.NewRegistry()
	}
	g.metrics = newMetrics(g.registry, g)
	g.metrics.countNATSSlowConsumers(nc)
	if cfg.ConnectRatePerIP > 0 {
		g.perAddr = newAddrLimit(cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if g.relay, err = newRelay(nc, log, g.metrics); err != nil {
		g.cancel()
		sockets.Close()
		return nil, err
	}
	for _, start := range []func() error{func() error { return g.announce(ctx) }, g.serveReannounce, g.serveWatchRequests} {
		if err := start(); err != nil {
			g.relay.close()
			g.cancel()
			sockets.Close()
			return nil, err
		}
	}
	g.wg.Add(2)
	go g.keepLease()
	go g.refreshActive()
	g.resyncAfterReconnect()
	if cfg.DevTokens {
		log.Warn("DEVELOPMENT TOKENS ARE ON: anyone can connect as any user without a signed token. Never in production.")
	}
	log.Info("gateway started", "epoch", g.epoch.Load())
	return g, nil
}

// websocket1012 is the close code that makes the SDK reconnect (through the
// load balancer, elsewhere): "service restart".
const websocket1012 = socket.StatusServiceRestart

// Handler serves /connect, /metrics, /healthz (the process is alive) and
// /readyz (it takes connections: see NotReady).
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/connect", g.serveConnect)
	ops.Handle(mux, g.registry, g.NotReady)
	return mux
}

// NotReady says why the node should not take connections (it is draining,
// or NATS is not connected), or "" when it should.
func (g *Gateway) NotReady() string {
	g.mu.Lock()
	draining := g.draining
	g.mu.Unlock()
	switch {
	case draining:
		return "draining"
	case !g.nc.IsConnected():
		return "not connected to NATS"
	}
	return ""
}

// Close drains the node: it stops accepting, closes its sockets spread over
// DrainWindow with 1012 (the SDK reconnects, elsewhere), publishes each close
// with DrainGrace so users reconnecting elsewhere never read offline, and
// ends its background work.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.draining = true
	conns := make([]*conn, 0, len(g.conns))
	for _, c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	g.log.Info("draining", "connections", len(conns), "window", g.cfg.DrainWindow)
	for i, c := range conns {
		c.grace.Store(int64(g.cfg.DrainGrace))
		if g.cfg.DrainWindow > 0 {
			// Spread evenly with jitter so reconnects arrive as a trickle.
			slot := g.cfg.DrainWindow * time.Duration(i) / time.Duration(len(conns))
			jitter := time.Duration(rand.Int64N(int64(g.cfg.DrainWindow)/int64(len(conns)) + 1))
			time.AfterFunc(slot+jitter, func() { c.close(websocket1012, "server restarting") })
			continue
		}
		go c.close(websocket1012, "server restarting") // each handshake may wait on its peer
	}
	g.connWG.Wait()
	g.sockets.Close()
	g.cancel()
	g.wg.Wait()
	g.retireLease()
	g.relay.close()
	g.log.Info("gateway stopped")
}

// ConnCount is the number of open connections.
func (g *Gateway) ConnCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// maxHeaderBytes bounds a request's line and headers. A connect carries its
// json parameter (at most maxConnectJSON, three times that URL-escaped) and
// its token in the URL.
const maxHeaderBytes = 64 << 10

// NewHTTPServer is the HTTP server a gateway is served with: bounds on how
// long a request may take to arrive, how long a kept-alive connection may
// idle and how big a request's head may be, against clients that trickle or
// bloat them. The read timeout cannot cut an established WebSocket: Upgrade
// clears the deadlines of the connection it takes over, and the socket reads
// its descriptor directly.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler: h, MaxHeaderBytes: maxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
	}
}

// Run connects to NATS and serves /connect on cfg.WSAddr until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	nc, err := natsconn.Connect(cfg.NATSURL, "presence-gateway "+cfg.NodeName, log, natsconn.As(natsauth.Gateway, cfg.NATSUser, cfg.NATSPassword))
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer nc.Drain()
	lnc, err := natsconn.Connect(cfg.NATSURL, "presence-gateway "+cfg.NodeName+" lease", log, natsconn.As(natsauth.Gateway, cfg.NATSUser, cfg.NATSPassword))
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer lnc.Drain()
	g, err := New(ctx, cfg, nc, log, WithLeaseConn(lnc))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.WSAddr)
	if err != nil {
		g.Close()
		return err
	}
	srv := NewHTTPServer(g.Handler())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g.log.Info("listening", "ws", ln.Addr().String())
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	g.Close()
	return err
}

func (g *Gateway) publish(ctx context.Context, ev connevent.Event) error {
	_, err := g.js.Publish(ctx, subject.ConnEvent(g.cfg.NodeName, ev.User), ev.Encode(), jetstream.WithMsgID(ev.MsgID()))
	return err
}
