// Package peer is the benchmark's peer: a presence server built on
// centrifuge (Centrifugo's library) the way its users build one, so
// make bench can put Presence's numbers next to a well-known design's.
//
// It is configured as centrifuge's docs and examples recommend and no
// further: the in-memory broker and presence manager that centrifuge.New
// installs, clients authenticated by an HS256 connection JWT (the user in
// sub), and every channel subscribable with presence and join/leave on.
// A client that subscribes to a channel is a member there; the subscribers
// that asked for join/leave pushes see it join and leave.
package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/centrifugal/centrifuge"
)

// Config is what the peer serves and how clients authenticate.
type Config struct {
	// Addr serves /connection/websocket (and /health); ":0" picks a port.
	Addr string
	// Secret is the HS256 key of connection tokens.
	Secret string
	// PprofAddr, when set, serves /debug/pprof/ there.
	PprofAddr string
	// Listening, when set, is told the address Addr resolved to.
	Listening func(net.Addr)
	// Log gets centrifuge's errors (nil: discarded).
	Log *slog.Logger
}

// Run serves until ctx ends, then disconnects the clients and returns
// after the servers have shut down.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Secret == "" {
		return errors.New("peer: a token secret is required")
	}
	node, err := newNode(cfg)
	if err != nil {
		return err
	}
	if err := node.Run(); err != nil {
		return fmt.Errorf("peer: run node: %w", err)
	}
	mux := http.NewServeMux()
	// The buffer sizes of centrifuge's examples.
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		ReadBufferSize:     1024,
		UseWriteBufferPool: true,
	}))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = node.Shutdown(context.Background())
		return fmt.Errorf("peer: %w", err)
	}
	servers := []*http.Server{{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{ln}
	if cfg.PprofAddr != "" {
		pln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			ln.Close()
			_ = node.Shutdown(context.Background())
			return fmt.Errorf("peer: pprof: %w", err)
		}
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		servers = append(servers, &http.Server{Handler: pm, ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, pln)
	}
	if cfg.Listening != nil {
		cfg.Listening(ln.Addr())
	}

	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() {
			if err := srv.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The node first: it disconnects the clients, whose sockets the HTTP
	// server no longer tracks once upgraded.
	_ = node.Shutdown(sctx)
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	wg.Wait()
	return serveErr
}

// subscribeOptions turn presence on for a subscription, as Centrifugo's
// presence and join_leave channel options do: the client counts in the
// channel's presence, its subscribing and leaving are emitted as join and
// leave, and it receives the others' if it asked to (centrifuge-js's
// joinLeave subscription option), so a member that only needs to be seen
// is not sent every other member's coming and going.
func subscribeOptions(e centrifuge.SubscribeEvent) centrifuge.SubscribeOptions {
	return centrifuge.SubscribeOptions{EmitPresence: true, EmitJoinLeave: true, PushJoinLeave: e.JoinLeave}
}

func newNode(cfg Config) (*centrifuge.Node, error) {
	ncfg := centrifuge.Config{LogLevel: centrifuge.LogLevelNone}
	if cfg.Log != nil {
		ncfg.LogLevel = centrifuge.LogLevelError
		ncfg.LogHandler = func(e centrifuge.LogEntry) {
			cfg.Log.Error(e.Message, "fields", e.Fields)
		}
	}
	node, err := centrifuge.New(ncfg)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	secret := []byte(cfg.Secret)
	node.OnConnecting(func(_ context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		user, err := verify(secret, e.Token, time.Now())
		switch {
		case errors.Is(err, ErrTokenExpired):
			return centrifuge.ConnectReply{}, centrifuge.ErrorTokenExpired
		case err != nil:
			return centrifuge.ConnectReply{}, centrifuge.DisconnectInvalidToken
		}
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: user}}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{Options: subscribeOptions(e)}, nil)
		})
		// Members may ask who else is in a channel they belong to.
		c.OnPresence(func(e centrifuge.PresenceEvent, cb centrifuge.PresenceCallback) {
			if !c.IsSubscribed(e.Channel) {
				cb(centrifuge.PresenceReply{}, centrifuge.ErrorPermissionDenied)
				return
			}
			cb(centrifuge.PresenceReply{}, nil)
		})
	})
	return node, nil
}
