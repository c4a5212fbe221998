// Package api is Presence's REST API: the subset of Stream Chat's REST
// surface the official SDK uses for users, channels, channel types and
// presence watches (PROTOCOL.md §6).
//
// JetStream KV is the system of record; every write is a compare-and-set
// through pkg/store. Queries are answered from a local bbolt index kept
// current by KV watches (index.go). Watches are not held here: an api node
// checks the caller may see what it asks for, then asks the gateway owning the
// caller's connection to add them (pkg/watch).
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
	"github.com/presencehq/presence/pkg/ops"
	"github.com/presencehq/presence/pkg/route"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/token"
)

// Server is one api node.
type Server struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store.Store
	tokens *token.Checker
	router *route.Router
	idx    *index
	log    *slog.Logger
	echo   *echo.Echo
	now    func() time.Time
	// userLimit counts client-side callers' requests per user and
	// endpoint, keyLimit every request (nil: no limit); see rateLimit.
	userLimit, keyLimit *window
	// registry holds the node's metrics; the same one serves /metrics.
	registry *prometheus.Registry
	metrics  *metrics

	queries   micro.Service      // the presence queries over NATS (natsapi.go)
	cancel    context.CancelFunc // ends the router's watch
	closeOnce sync.Once
	closeErr  error
}

// Option adjusts an api node at New.
type Option func(*Server)

// WithRegistry registers the node's metrics on reg and serves reg on
// /metrics (the all-in-one shares one among its services). Without it the
// node has a registry of its own.
func WithRegistry(reg *prometheus.Registry) Option { return func(s *Server) { s.registry = reg } }

// New sets up the store, opens the index and waits until it has caught up
// with the buckets, so the first query already sees everything.
func New(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger, opts ...Option) (*Server, error) {
	if cfg.APIKey == "" || cfg.APISecret == "" {
		return nil, errors.New("api: api key and api secret are required")
	}
	if cfg.NodeName == "" {
		cfg.NodeName = defaultNodeName()
	}
	if err := subject.CheckNode(cfg.NodeName); err != nil {
		return nil, fmt.Errorf("api: node name: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("api: jetstream: %w", err)
	}
	st, err := store.Setup(ctx, js, store.Options{Replicas: cfg.Replicas})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{
		cfg: cfg, nc: nc, js: js, st: st, log: log, now: func() time.Time { return time.Now().UTC() },
		tokens: token.NewChecker(cfg.APISecret, token.WithPreviousSecret(cfg.APISecretPrevious), token.WithDevTokens(cfg.DevTokens)),
	}
	for _, o := range opts {
		o(s)
	}
	if s.registry == nil {
		s.registry = ops.NewRegistry()
	}
	s.metrics = newMetrics(s.registry)
	if cfg.RateLimitUser > 0 {
		s.userLimit = newWindow(cfg.RateLimitUser, maxLimitedKeys)
	}
	if cfg.RateLimitAPIKey > 0 {
		s.keyLimit = newWindow(cfg.RateLimitAPIKey, 1)
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// route.New waits for its initial values under rctx; bound that wait by ctx too.
	stop := context.AfterFunc(ctx, cancel)
	s.router, err = route.New(rctx, st)
	stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("api: channel types: %w", err)
	}
	s.idx, err = openIndex(ctx, cfg.IndexDir, cfg.NodeName, log, st.Users, st.Presence, st.Channels, st.Members)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := s.migrateInlineMembers(ctx); err != nil {
		cancel()
		_ = s.idx.close()
		return nil, err
	}
	s.echo = s.routes()
	if s.queries, err = s.startQueries(); err != nil {
		cancel()
		_ = s.idx.close()
		return nil, err
	}
	return s, nil
}

// Handler is the REST API (every path but /connect), with /metrics,
// /healthz and /readyz.
func (s *Server) Handler() http.Handler { return s.echo }

// NotReady says why the node should not get requests (NATS is not
// connected), or "" when it should. It is caught up from
// the start: New returns only once its index has caught up.
func (s *Server) NotReady() string {
	if !s.nc.IsConnected() {
		return "not connected to NATS"
	}
	return ""
}

// Close stops the watches, waits for them and closes the index. Calling it
// again does nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		_ = s.queries.Stop()
		s.cancel()
		<-s.router.Stopped()
		s.closeErr = s.idx.close()
	})
	return s.closeErr
}

// maxHeaderBytes bounds a request's line and headers: a query's payload
// parameter holds a filter of up to filter.MaxBytes of JSON, at most three
// times that URL-escaped.
const maxHeaderBytes = 4 * filter.MaxBytes

// NewHTTPServer is the HTTP server an api node is served with on addr:
// bounds on how long a request may take to arrive, how long a kept-alive
// connection may idle and how big a request's head may be, against clients
// that trickle or bloat them.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h, MaxHeaderBytes: maxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
	}
}

// Run serves the api on cfg.HTTPAddr until ctx ends, then shuts down
// gracefully.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	nc, err := natsconn.Connect(cfg.NATSURL, "presence-api "+cfg.NodeName, log, natsconn.As(natsauth.API, cfg.NATSUser, cfg.NATSPassword))
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	defer nc.Close()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	srv, err := New(startCtx, cfg, nc, log)
	cancel()
	if err != nil {
		return err
	}
	defer srv.Close()

	hs := NewHTTPServer(cfg.HTTPAddr, srv.Handler())
	errc := make(chan error, 1)
	go func() { errc <- hs.ListenAndServe() }()
	log.Info("api listening", "addr", cfg.HTTPAddr)
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	<-errc
	return nil
}
