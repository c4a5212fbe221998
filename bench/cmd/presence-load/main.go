// Command presence-load drives SDK-like WebSocket clients against a
// Presence gateway; presence-bench runs several of these processes (a
// process may hold at most 20,000 open files on the benchmark machine).
//
//	presence-load idle -url ws://127.0.0.1:8800/connect -key K -secret S -n 5000 -src 127.0.0.2,127.0.0.3 [-prefix u]
//
// idle connects n clients, prints one JSON line (load.Connected) on stdout,
// keeps the sockets open (answering pings, sending health checks) until its
// stdin is closed, then closes them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/presencehq/presence/bench/load"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presence-load:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "idle" {
		return fmt.Errorf("usage: presence-load idle -url ws://host:port/connect -key K -secret S -n N [-src ip,ip] [-prefix p]")
	}
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	target := load.Target{}
	fs.StringVar(&target.URL, "url", "ws://127.0.0.1:8800/connect", "the gateway's /connect")
	fs.StringVar(&target.Key, "key", "", "API key")
	fs.StringVar(&target.Secret, "secret", "", "API secret the tokens are signed with")
	n := fs.Int("n", 1000, "clients to connect")
	src := fs.String("src", "", "comma-separated source IPs in 127.0.0.0/8 (default: any)")
	prefix := fs.String("prefix", "load", "user id prefix")
	concurrency := fs.Int("concurrency", 64, "connects under way at once")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var dialers []*load.Dialer
	for _, ip := range strings.Split(*src, ",") {
		dialers = append(dialers, load.NewDialer(target, strings.TrimSpace(ip)))
	}
	users := make([]string, *n)
	for i := range users {
		users[i] = fmt.Sprintf("%s-%06d", *prefix, i)
	}
	pool := load.NewPool(25 * time.Second)
	defer pool.Close()
	dial := func(ctx context.Context, i int, user string) (load.Socket, error) {
		return dialers[i%len(dialers)].Dial(ctx, user)
	}
	res := load.ConnectAll(ctx, pool, dial, users, *concurrency)
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return err
	}
	// Hold until told to stop (stdin closed) or interrupted.
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
