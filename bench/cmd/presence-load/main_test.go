package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/bench/load"
	"github.com/presencehq/presence/bench/peer"
)

func startPeer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- peer.Run(ctx, peer.Config{Addr: "127.0.0.1:0", Secret: "s", Listening: func(a net.Addr) { addr <- a }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return "ws://" + a.String() + "/connection/websocket"
	case err := <-done:
		t.Fatalf("peer: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("peer did not start within 10 s")
	}
	return ""
}

// TestStormDropsAndReconnectsEveryClientWhenTold drives the storm
// subcommand as presence-bench does: connected, "drop", reconnected, EOF.
func TestStormDropsAndReconnectsEveryClientWhenTold(t *testing.T) {
	url := startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdin, tell := io.Pipe()
	out, stdout := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"storm", "-system", "centrifuge", "-url", url, "-secret", "s", "-src", "127.0.0.1", "-n", "20", "-channels", "2", "-prefix", "st"}, stdin, stdout)
		stdout.Close()
	}()
	lines := bufio.NewScanner(out)
	next := func() load.Connected {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("no line from storm (%v)", lines.Err())
		}
		var c load.Connected
		if err := json.Unmarshal(lines.Bytes(), &c); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return c
	}
	if c := next(); c.Conns != 20 || c.Failed != 0 {
		t.Fatalf("connected %+v, want 20", c)
	}
	if _, err := io.WriteString(tell, "drop\n"); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.Conns != 20 || c.Failed != 0 || c.Took < 500*time.Millisecond {
		t.Fatalf("reconnected %+v, want 20 after at least centrifuge-js's first backoff (500 ms)", c)
	}
	tell.Close()
	if err := <-done; err != nil {
		t.Fatalf("storm: %v", err)
	}
}

// TestIdleConnectsInStepsWhenTold drives idle -steps as presence-bench
// does: a batch, "next", a batch, …, EOF.
func TestIdleConnectsInStepsWhenTold(t *testing.T) {
	url := startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdin, tell := io.Pipe()
	out, stdout := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"idle", "-system", "centrifuge", "-url", url, "-secret", "s", "-src", "127.0.0.1", "-n", "25", "-steps", "3", "-prefix", "id"}, stdin, stdout)
		stdout.Close()
	}()
	lines := bufio.NewScanner(out)
	for k, want := range []int{8, 16, 25} {
		if k > 0 {
			if _, err := io.WriteString(tell, "next\n"); err != nil {
				t.Fatal(err)
			}
		}
		if !lines.Scan() {
			t.Fatalf("step %d: no line from idle (%v)", k, lines.Err())
		}
		var c load.Connected
		if err := json.Unmarshal(lines.Bytes(), &c); err != nil {
			t.Fatalf("step %d: line %q: %v", k, lines.Text(), err)
		}
		if c.Conns != want || c.Failed != 0 {
			t.Fatalf("step %d connected %+v, want %d so far", k, c, want)
		}
	}
	tell.Close()
	if err := <-done; err != nil {
		t.Fatalf("idle: %v", err)
	}
}

func TestIdleStopsBetweenStepsWhenStdinCloses(t *testing.T) {
	url := startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdin, tell := io.Pipe()
	out, stdout := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"idle", "-system", "centrifuge", "-url", url, "-secret", "s", "-src", "127.0.0.1", "-n", "4", "-steps", "2", "-prefix", "ic"}, stdin, stdout)
		stdout.Close()
	}()
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("no first line from idle (%v)", lines.Err())
	}
	tell.Close()
	if err := <-done; err != nil {
		t.Fatalf("idle: %v", err)
	}
	if lines.Scan() {
		t.Fatalf("idle printed %q after stdin closed, want nothing", lines.Text())
	}
}

func TestIdleRejectsMoreStepsThanClients(t *testing.T) {
	err := run(context.Background(), []string{"idle", "-system", "centrifuge", "-n", "2", "-steps", "3"}, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-steps 3") {
		t.Fatalf("run = %v, want an error about -steps 3", err)
	}
}
