// Package natsserver starts an embedded nats-server with JetStream, for the
// all-in-one runner and for tests.
package natsserver

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for an embedded server.
type Options struct {
	// Addr is host:port of the client listener; port 0 or -1 picks a free one.
	Addr string
	// StoreDir holds JetStream data.
	StoreDir string
	// ServerName names the server (defaults to "presence").
	ServerName string
	// Users, when set, are the only clients let in, each with its
	// permissions (pkg/natsauth); otherwise anyone may connect.
	Users []*server.User
	// Log receives the server's warnings and errors (permission violations
	// among them); nil discards them.
	Log *slog.Logger
	// SyncAlways has JetStream fsync every write before acknowledging it,
	// so an acknowledged write survives a power loss or kernel crash too.
	// Off, nats-server's default holds: writes reach the OS page cache
	// before the acknowledgement (a crash of the process loses nothing)
	// and are fsynced every 2 minutes.
	SyncAlways bool
}

// Start starts a server and waits until it accepts clients.
func Start(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("nats addr %q: %w", o.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats addr %q: %w", o.Addr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	name := o.ServerName
	if name == "" {
		name = "presence"
	}
	s, err := server.NewServer(&server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		MaxPayload: 1 << 20,
		Users:      o.Users,
		SyncAlways: o.SyncAlways,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if o.Log != nil {
		s.SetLogger(logger{o.Log.With("component", "nats-server")}, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server on %s did not start", o.Addr)
	}
	return s, nil
}

// StartForTest starts a server on a random loopback port with a temporary
// store, shut down when the test ends.
func StartForTest(t testing.TB) *server.Server {
	t.Helper()
	s, err := Start(Options{Addr: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// logger passes the server's warnings and errors on to slog; its notices
// (start-up chatter) go at debug level.
type logger struct{ log *slog.Logger }

func (l logger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l logger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l logger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l logger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l logger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l logger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
