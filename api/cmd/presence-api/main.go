// Command presence-api runs one node of Presence's REST API.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/pkg/config"
	"github.com/presencehq/presence/pkg/logs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "presence-api:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("presence-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg api.Config
	var lo logs.Options
	cfg.RegisterFlags(fs)
	lo.RegisterFlags(fs)
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}
	log, err := lo.New(stderr, "service", "api", "node", cfg.NodeName)
	if err != nil {
		return err
	}
	return api.Run(ctx, cfg, log)
}
