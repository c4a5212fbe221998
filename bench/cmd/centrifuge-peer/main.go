// Command centrifuge-peer serves the benchmark's peer: a presence server on
// centrifuge (package peer). make bench starts it next to Presence.
//
//	centrifuge-peer -addr 127.0.0.1:8000 -secret S [-pprof 127.0.0.1:6060]
//
// Clients connect to ws://addr/connection/websocket with an HS256 JWT
// signed with S whose sub is the user.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/presencehq/presence/bench/peer"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "centrifuge-peer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("centrifuge-peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := peer.Config{}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8000", "address of /connection/websocket")
	fs.StringVar(&cfg.Secret, "secret", getenv("PEER_TOKEN_SECRET"), "HS256 secret of connection tokens (default $PEER_TOKEN_SECRET)")
	fs.StringVar(&cfg.PprofAddr, "pprof", "", "address of /debug/pprof/ (default: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, nil))
	return peer.Run(ctx, cfg)
}
