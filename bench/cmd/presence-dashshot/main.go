// Command presence-dashshot draws the Presence dashboard from live numbers
// and screenshots it: docs/img/dashboard.png, `make dashboard-shot`.
//
// Grafana cannot run where the picture is made (no container engine, no
// package), so the picture is not Grafana's own. It is every panel of
// deploy/grafana/dashboards/presence.json, laid out on the dashboard's grid,
// each of its queries run as it is written against a real Prometheus over
// one time range, drawn with uPlot by deploy/grafana/preview and
// screenshotted by headless Chromium. The picture's header says so.
//
// By default it makes the numbers too: it builds and starts the all-in-one
// of `make run` on free loopback ports, Prometheus (Debian's prometheus
// package, or any prometheus on $PATH) scraping its /metrics every 2 s,
// and runs a load for -duration: 1,000 users who stay connected, 400 more
// connecting and disconnecting at rising rates while one watcher per
// channel reads their changes (bench/load's churn), a connect with a bad
// token every second, and one user calling the REST API past its rate
// limit. Before drawing it checks
// the scrape against the metric contract, docs/metrics.md, and stops if a
// metric is missing (-allow-missing draws anyway).
//
// With -prometheus it only draws, from that Prometheus, the last -range.
//
//	presence-dashshot [-out docs/img/dashboard.png] [-duration 4m]
//	presence-dashshot -prometheus http://127.0.0.1:9090 [-range 15m] [-job RE] [-instance RE]
//
// Run it from the repository's root; the preview needs its npm package
// (cd deploy/grafana/preview && npm ci), and Chromium (apt-get install
// chromium).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presence-dashshot:", err)
		os.Exit(1)
	}
}

type options struct {
	out, dashboard, preview, contract string
	prometheus                        string
	span, duration                    time.Duration
	job, instance                     string
	chromium, keep                    string
	width                             int
	allowMissing                      bool
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("presence-dashshot", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.out, "out", "docs/img/dashboard.png", "the screenshot (PNG)")
	fs.StringVar(&o.dashboard, "dashboard", "deploy/grafana/dashboards/presence.json", "the dashboard to draw")
	fs.StringVar(&o.preview, "preview", "deploy/grafana/preview", "the preview page (its node_modules holds uPlot)")
	fs.StringVar(&o.contract, "contract", "docs/metrics.md", "the metric contract the scrape is checked against")
	fs.StringVar(&o.prometheus, "prometheus", "", "draw from this Prometheus (http://host:port) instead of starting the all-in-one, Prometheus and a load")
	fs.DurationVar(&o.span, "range", 15*time.Minute, "with -prometheus: the time range drawn, ending now")
	fs.DurationVar(&o.duration, "duration", 4*time.Minute, "how long the load runs")
	fs.StringVar(&o.job, "job", ".*", "the dashboard's job choice, a regular expression")
	fs.StringVar(&o.instance, "instance", ".*", "the dashboard's instance choice, a regular expression")
	fs.StringVar(&o.chromium, "chromium", "", "Chromium's binary (default: chromium or google-chrome on $PATH)")
	fs.StringVar(&o.keep, "keep", "", "also write the page to this HTML file")
	fs.IntVar(&o.width, "width", 1600, "the picture's width in pixels")
	fs.BoolVar(&o.allowMissing, "allow-missing", false, "draw even when the scrape lacks metrics of the contract")
	if err := fs.Parse(args); err != nil {
		return err
	}
	chromium, err := findChromium(o.chromium)
	if err != nil {
		return err
	}
	var shot shot
	if o.prometheus != "" {
		end := time.Now()
		shot = newShot(o.prometheus, end.Add(-o.span), end)
		shot.source = "from " + o.prometheus
	} else {
		live, err := startLive(ctx, o, stdout)
		if err != nil {
			return err
		}
		defer live.stop()
		if shot, err = live.runLoad(ctx, o, stdout); err != nil {
			return err
		}
	}
	shot.job, shot.instance = o.job, o.instance
	page, err := shot.page(ctx, o)
	if err != nil {
		return err
	}
	if o.keep != "" {
		if err := os.WriteFile(o.keep, page.html, 0o644); err != nil {
			return err
		}
	}
	if err := screenshot(ctx, chromium, page, o.width, o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d panels, %d with data\n", o.out, page.panels, page.withData)
	return nil
}
