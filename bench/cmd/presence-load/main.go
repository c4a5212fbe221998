// Command presence-load drives SDK-like WebSocket clients against Presence
// (the Stream SDK's protocol) or the centrifuge peer (centrifuge-js's);
// presence-bench runs several of these processes (a process may hold at
// most 20,000 open files on the benchmark machine). It prints JSON lines on
// stdout and takes its cues on stdin.
//
//	presence-load idle   -system presence|centrifuge -url U [-rest R] -key K -secret S -n N [-steps K] [-src ip,ip] [-prefix p]
//	presence-load churn  ... -users N -channels C -rates 250,500,… -step 4s -max-lag 1s
//	presence-load fanout ... -n N -channels C -target USER
//	presence-load storm  ... -n N -channels C
//
// idle connects n clients, prints load.Connected, and holds the sockets
// (answering pings, sending health checks) until stdin closes. With
// -steps K it connects them in K batches of about n/K, prints
// load.Connected after each (Conns: its clients connected so far; Failed,
// Retries, Took: the batch's) and waits for a line on stdin before the
// next, so that presence-bench can sample the server's memory at each step.
//
// churn runs load.Churn (its users connect and disconnect at rising rates
// while watchers read the changes): it prints {"started":true} as the first
// step begins, then load.ChurnResult.
//
// fanout connects n watchers of channels holding the target, prints
// load.Connected, then for each line "online" or "offline" on stdin prints
// {"armed":true}, waits until every watcher has seen the target's change
// (or 15 s) and prints load.FanoutRound.
//
// storm connects n members of channels, prints load.Connected; on the line
// "drop" it drops every socket at once, reconnects them with the system's
// SDK backoff, and prints load.Connected for the reconnects; it holds the
// sockets until stdin closes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/presencehq/presence/bench/load"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presence-load:", err)
		os.Exit(1)
	}
}

const usage = "usage: presence-load idle|churn|fanout|storm -system presence|centrifuge -url U [-rest R] -key K -secret S …"

// opts are the flags every subcommand takes.
type opts struct {
	system, url, rest, key, secret, src, prefix string
	concurrency                                 int
}

func (o *opts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.system, "system", "presence", "presence or centrifuge")
	fs.StringVar(&o.url, "url", "ws://127.0.0.1:8800/connect", "Presence's /connect or the peer's /connection/websocket")
	fs.StringVar(&o.rest, "rest", "http://127.0.0.1:3030", "Presence's REST API")
	fs.StringVar(&o.key, "key", "", "API key (Presence)")
	fs.StringVar(&o.secret, "secret", "", "secret the tokens are signed with")
	fs.StringVar(&o.src, "src", "", "comma-separated source IPs in 127.0.0.0/8 (default: any)")
	fs.StringVar(&o.prefix, "prefix", "load", "user and channel id prefix")
	fs.IntVar(&o.concurrency, "concurrency", 64, "connects under way at once")
}

func (o *opts) connect() (load.System, error) {
	var sources []string
	for ip := range strings.SplitSeq(o.src, ",") {
		if ip = strings.TrimSpace(ip); ip != "" {
			sources = append(sources, ip)
		}
	}
	switch o.system {
	case "presence":
		return load.NewPresence(load.Target{URL: o.url, Key: o.key, Secret: o.secret}, load.REST{Base: o.rest, Key: o.key, Secret: o.secret}, sources), nil
	case "centrifuge":
		return load.NewCentrifuge(o.url, o.secret, sources), nil
	}
	return nil, fmt.Errorf("-system %q: want presence or centrifuge", o.system)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	var o opts
	o.register(fs)
	n := fs.Int("n", 1000, "clients (idle, storm) or watchers (fanout)")
	steps := fs.Int("steps", 1, "batches to connect the clients in, each after a line on stdin but the first (idle)")
	channels := fs.Int("channels", 10, "channels (churn, fanout, storm)")
	users := fs.Int("users", 2000, "churning users (churn)")
	rates := fs.String("rates", "250,500,1000,2000,4000,8000,16000,32000", "transitions/s of each step (churn)")
	step := fs.Duration("step", 4*time.Second, "how long each rate is held (churn)")
	maxLag := fs.Duration("max-lag", time.Second, "p99 lag past which a step does not hold (churn)")
	target := fs.String("target", "fanout-target", "the user whose changes the watchers see (fanout)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	sys, err := o.connect()
	if err != nil {
		return err
	}
	out := json.NewEncoder(stdout)
	lines := bufio.NewScanner(stdin)
	switch args[0] {
	case "idle":
		return idle(ctx, sys, o, *n, *steps, lines, out)
	case "churn":
		var rs []float64
		for r := range strings.SplitSeq(*rates, ",") {
			f, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
			if err != nil {
				return fmt.Errorf("-rates: %w", err)
			}
			rs = append(rs, f)
		}
		res, err := load.Churn(ctx, sys, load.ChurnParams{Users: *users, Channels: *channels, Prefix: o.prefix, Rates: rs, Step: *step, MaxLag: *maxLag,
			Started: func() { _ = out.Encode(map[string]bool{"started": true}) }})
		if err != nil {
			return err
		}
		return out.Encode(res)
	case "fanout":
		pool := load.NewPool(25 * time.Second)
		defer pool.Close()
		f, res, err := load.StartFanout(ctx, sys, pool, load.FanoutParams{Target: *target, Watchers: *n, Channels: *channels, Prefix: o.prefix}, o.concurrency)
		if err != nil {
			return err
		}
		if err := out.Encode(res); err != nil {
			return err
		}
		for lines.Scan() {
			f.Arm(lines.Text() == "online")
			if err := out.Encode(map[string]bool{"armed": true}); err != nil {
				return err
			}
			if err := out.Encode(f.Wait(ctx, 15*time.Second)); err != nil {
				return err
			}
		}
		return nil
	case "storm":
		return storm(ctx, sys, o, *n, *channels, lines, out)
	}
	return fmt.Errorf("%s", usage)
}

// idle connects n clients in steps batches, each but the first when told
// by a line on stdin, and holds them until stdin closes.
func idle(ctx context.Context, sys load.System, o opts, n, steps int, lines *bufio.Scanner, out *json.Encoder) error {
	if steps < 1 || steps > max(n, 1) {
		return fmt.Errorf("-steps %d: want 1 to -n (%d)", steps, n)
	}
	pool := load.NewPool(25 * time.Second)
	defer pool.Close()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%06d", o.prefix, i)
	}
	for k := range steps {
		if k > 0 && !lines.Scan() {
			return nil // stdin closed: presence-bench is done with us
		}
		from, to := k*n/steps, (k+1)*n/steps
		res := load.ConnectAll(ctx, pool, func(ctx context.Context, i int, user string) (load.Socket, error) {
			return sys.Member(ctx, from+i, user, nil)
		}, names[from:to], o.concurrency)
		if err := out.Encode(res); err != nil {
			return err
		}
	}
	holdUntilEOF(ctx, lines)
	return nil
}

// storm connects n members of Groups(prefix, n, channels), and drops and
// reconnects them all when told.
func storm(ctx context.Context, sys load.System, o opts, n, channels int, lines *bufio.Scanner, out *json.Encoder) error {
	if err := sys.Setup(ctx, load.Groups(o.prefix, n, channels)); err != nil {
		return err
	}
	pool := load.NewPool(25 * time.Second)
	defer pool.Close()
	names := make([]string, n)
	for i := range names {
		names[i] = load.UserName(o.prefix, i)
	}
	dial := func(ctx context.Context, i int, user string) (load.Socket, error) {
		return sys.Member(ctx, i, user, []string{load.ChannelName(o.prefix, i%channels)})
	}
	if err := out.Encode(load.ConnectAll(ctx, pool, dial, names, o.concurrency)); err != nil {
		return err
	}
	for lines.Scan() {
		if lines.Text() != "drop" {
			continue
		}
		pool.Drop()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		res := load.Reconnect(rctx, pool, dial, names, sys.Backoff)
		cancel()
		if err := out.Encode(res); err != nil {
			return err
		}
	}
	return nil
}

// holdUntilEOF holds until stdin closes or ctx ends.
func holdUntilEOF(ctx context.Context, lines *bufio.Scanner) {
	done := make(chan struct{})
	go func() {
		for lines.Scan() {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
