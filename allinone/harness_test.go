package allinone

import (
	"context"
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
	p, err := Start(ctx, cfg, nil)
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
