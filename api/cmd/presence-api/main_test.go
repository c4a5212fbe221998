package main

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/natsserver"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestRunServesUntilCancelled(t *testing.T) {
	ns := natsserver.StartForTest(t)
	addr := freeAddr(t)
	env := map[string]string{
		"PRESENCE_NATS_URL":   ns.ClientURL(),
		"PRESENCE_API_KEY":    "k",
		"PRESENCE_API_SECRET": "s",
		"PRESENCE_INDEX_DIR":  t.TempDir(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-http-addr", addr, "-node-name", "cmdtest"}, func(k string) string { return env[k] }, &testWriter{t})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/users?api_key=wrong")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong api key answered %d, want 401", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api did not start: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunNeedsASecret(t *testing.T) {
	ns := natsserver.StartForTest(t)
	err := run(context.Background(), []string{"-nats-url", ns.ClientURL(), "-api-key", "k"}, func(string) string { return "" }, &testWriter{t})
	if err == nil {
		t.Fatal("run without an api secret succeeded")
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
