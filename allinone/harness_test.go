package allinone

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// startForTest starts an all-in-one server on random loopback ports with its
// own data dir, closed when the test ends.
func startForTest(t *testing.T, cfg Config) *Presence {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.WSAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.APIKey == "" {
		cfg.APIKey = "e2e-key"
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "gateway-1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := &violations{}
	// Registered first, so it runs after p.Close: every service has then
	// said all it will.
	t.Cleanup(func() {
		if got := v.seen(); len(got) > 0 {
			t.Errorf("NATS permission violations (pkg/natsauth lacks a subject a service uses):\n%s", strings.Join(got, "\n"))
		}
	})
	p, err := Start(ctx, cfg, slog.New(v))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// violations is a log handler that keeps the NATS server's permission
// violations: the all-in-one runs every service as its own NATS user, so
// every test through it also checks pkg/natsauth grants what the services
// use.
type violations struct {
	mu   sync.Mutex
	msgs []string
}

func (v *violations) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (v *violations) WithAttrs([]slog.Attr) slog.Handler           { return v }
func (v *violations) WithGroup(string) slog.Handler                { return v }

func (v *violations) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "Violation") || strings.Contains(r.Message, "Permissions") {
		v.mu.Lock()
		v.msgs = append(v.msgs, r.Message)
		v.mu.Unlock()
	}
	r.Attrs(func(a slog.Attr) bool {
		if strings.Contains(a.Value.String(), "Permissions Violation") {
			v.mu.Lock()
			v.msgs = append(v.msgs, r.Message+": "+a.Value.String())
			v.mu.Unlock()
		}
		return true
	})
	return slog.Default().Handler().Handle(context.Background(), r)
}

func (v *violations) seen() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.msgs)
}

// endpoint is a running Presence as its test clients see it: where it serves
// and the credentials it takes. The server may run in this process or in a
// child process.
type endpoint struct {
	httpURL, wsURL, key, secret string
}

func endpointOf(p *Presence) endpoint {
	return endpoint{httpURL: p.HTTPURL(), wsURL: p.WSURL(), key: p.cfg.APIKey, secret: p.Secret}
}
