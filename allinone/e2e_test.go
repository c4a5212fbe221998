package allinone

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestE2E runs the official stream-chat SDK suite (e2e/tests) against an
// all-in-one server on random ports. `make test` installs the suite's pinned
// packages first and sets PRESENCE_E2E=1, which makes a missing install a
// failure instead of a skip.
func TestE2E(t *testing.T) {
	e2eDir, err := filepath.Abs("../e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e2eDir, "node_modules", "stream-chat")); err != nil {
		if os.Getenv("PRESENCE_E2E") != "" {
			t.Fatalf("the SDK suite is not installed (%v): run `make test`", err)
		}
		t.Skip("SDK end-to-end suite not installed: run `make test` (it runs npm ci in e2e/)")
	}
	// With the limits a deployment runs with: the SDK suite must never
	// meet them.
	var d Config
	d.RegisterFlags(flag.NewFlagSet("presence", flag.ContinueOnError))
	// A previous secret, still accepted while rotating (10-security).
	const previous = "e2e-previous-secret"
	p := startForTest(t, Config{
		DevTokens: false, APISecretPrevious: previous,
		ConnectRatePerIP: d.ConnectRatePerIP, ConnectBurstPerIP: d.ConnectBurstPerIP,
		RateLimitUser: d.RateLimitUser, RateLimitAPIKey: d.RateLimitAPIKey,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-concurrency=1", "--test-reporter=spec", "--test-force-exit", "tests/")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(),
		"PRESENCE_URL="+p.HTTPURL(),
		"PRESENCE_API_KEY="+p.cfg.APIKey,
		"PRESENCE_API_SECRET="+p.Secret,
		"PRESENCE_API_SECRET_PREVIOUS="+previous,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("SDK suite output:\n%s", out)
	if err != nil {
		t.Fatalf("SDK suite failed: %v", err)
	}
}
