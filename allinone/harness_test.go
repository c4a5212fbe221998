package allinone

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/natsauth"
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
	v := natsauth.NewViolationLog(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Registered first, so it runs after p.Close: every service has then
	// said all it will.
	t.Cleanup(func() {
		if got := v.Seen(); len(got) > 0 {
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

// endpoint is a running Presence as its test clients see it: where it serves
// and the credentials it takes. The server may run in this process or in a
// child process.
type endpoint struct {
	httpURL, wsURL, key, secret string
}

func endpointOf(p *Presence) endpoint {
	return endpoint{httpURL: p.HTTPURL(), wsURL: p.WSURL(), key: p.cfg.APIKey, secret: p.Secret}
}
