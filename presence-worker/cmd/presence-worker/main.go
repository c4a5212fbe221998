// Command presence-worker runs one presence worker.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/presencehq/presence/pkg/config"
	"github.com/presencehq/presence/pkg/logs"
	worker "github.com/presencehq/presence/presence-worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg worker.Config
	fs := flag.NewFlagSet("presence-worker", flag.ExitOnError)
	var lo logs.Options
	cfg.RegisterFlags(fs)
	lo.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := lo.New(os.Stderr, "service", "worker", "node", cfg.Name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := worker.Run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "presence-worker:", err)
		os.Exit(1)
	}
}
