package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunNeedsASecret(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-addr", "127.0.0.1:0"}, func(string) string { return "" }, &stderr)
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("run without a secret = %v, want an error naming the secret", err)
	}
}

func TestRunTakesTheSecretFromTheEnvironmentAndStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-pprof", "127.0.0.1:0"}, func(k string) string {
			if k == "PEER_TOKEN_SECRET" {
				return "s"
			}
			return ""
		}, &stderr)
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v after its context ended, want nil (stderr: %s)", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15 s of its context ending")
	}
}
