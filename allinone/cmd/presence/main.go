// Command presence runs all of Presence in one process (make run), or mints
// a user token: presence token <user_id>.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/presencehq/presence/allinone"
	"github.com/presencehq/presence/pkg/config"
	"github.com/presencehq/presence/pkg/logs"
	"github.com/presencehq/presence/pkg/token"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg allinone.Config
	var lo logs.Options
	fs := flag.NewFlagSet("presence", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	lo.RegisterFlags(fs)
	if len(args) > 0 && args[0] == "token" {
		if err := config.Parse(fs, args[1:], getenv); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: presence token <user_id>")
		}
		secret, err := allinone.Secret(cfg)
		if err != nil {
			return err
		}
		tok, err := token.ForUser(secret, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Println(tok)
		return nil
	}
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}
	log, err := lo.New(os.Stderr)
	if err != nil {
		return err
	}
	return allinone.Run(ctx, cfg, log, os.Stdout)
}
