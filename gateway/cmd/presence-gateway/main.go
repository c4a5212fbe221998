// Command presence-gateway runs one gateway node: WebSocket /connect for the
// Stream Chat SDK.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/presencehq/presence/gateway"
	"github.com/presencehq/presence/pkg/config"
	"github.com/presencehq/presence/pkg/logs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg gateway.Config
	fs := flag.NewFlagSet("presence-gateway", flag.ExitOnError)
	var lo logs.Options
	cfg.RegisterFlags(fs)
	lo.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := lo.New(os.Stderr, "service", "gateway", "node", cfg.NodeName)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := gateway.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "presence-gateway:", err)
		os.Exit(1)
	}
}
