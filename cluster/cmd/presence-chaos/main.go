// Command presence-chaos runs the chaos scenarios of package
// cluster/chaos at full size (make chaos): for each, a fresh cluster of
// processes on loopback (3 NATS nodes, 2 workers, 2 gateways, 2 api nodes)
// on free ports in a temporary directory, the failure inflicted, and what
// REST and watchers saw checked. It prints a markdown table of what it
// measured, and exits 1 if any invariant broke.
//
// Run it from the repository's root:
//
//	presence-chaos [-size full|small] [-run regexp] [-logs dir] [-out file]
//
// Each cluster's output goes to <logs>/<scenario>.log (a temporary
// directory unless -logs is given), kept when something went wrong.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/presencehq/presence/cluster"
	"github.com/presencehq/presence/cluster/chaos"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == chaos.StormClientsCommand {
		// A child serving part of a storm's clients (see chaos.Storm).
		if err := chaos.ServeStormClients(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "presence-chaos storm-clients:", err)
			os.Exit(1)
		}
		return
	}
	code, err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "presence-chaos:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("presence-chaos", flag.ContinueOnError)
	size := fs.String("size", "full", "full (make chaos) or small (make test's sizes)")
	runRE := fs.String("run", "", "run only the scenarios whose name matches this regexp ("+names()+")")
	logs := fs.String("logs", "", "directory for each cluster's log (default: a temporary one)")
	out := fs.String("out", "", "also write the table to this file")
	deploy := fs.String("deploy", "./deploy", "the repository's deploy/ directory")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	sz := chaos.Full
	switch *size {
	case "full":
	case "small":
		sz = chaos.Small
	default:
		return 2, fmt.Errorf("-size %q: want full or small", *size)
	}
	re, err := regexp.Compile(*runRE)
	if err != nil {
		return 2, err
	}
	var scenarios []chaos.Scenario
	for _, s := range chaos.All(sz) {
		if re.MatchString(s.Name) {
			scenarios = append(scenarios, s)
		}
	}
	if len(scenarios) == 0 {
		return 2, fmt.Errorf("no scenario matches %q (%s)", *runRE, names())
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	work, err := os.MkdirTemp("", "presence-chaos-")
	if err != nil {
		return 2, err
	}
	defer os.RemoveAll(work)
	logDir := *logs
	keepLogs := logDir != ""
	if logDir == "" {
		logDir = filepath.Join(work, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return 2, err
	}
	bin := filepath.Join(work, "bin")
	fmt.Fprintf(stderr, "presence-chaos: building the binaries\n")
	if err := cluster.Build(ctx, ".", bin, stderr); err != nil {
		return 2, err
	}

	var results []*chaos.Result
	failed := false
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "\npresence-chaos: %s (%s)\n", sc.Title, sz)
		res, logFile, err := runOne(ctx, sc, bin, *deploy, work, logDir, stderr)
		if err != nil {
			failed = true
			if res == nil {
				res = &chaos.Result{Scenario: sc.Title}
			}
			res.Violate("could not run: %v", err)
		}
		if !res.Ok() {
			failed = true
			keepLogs = true
			fmt.Fprintf(stderr, "presence-chaos: %s FAILED; cluster log: %s\n", sc.Title, logFile)
			for i, v := range res.Violations {
				if i == 10 {
					fmt.Fprintf(stderr, "  … %d more violations\n", len(res.Violations)-10)
					break
				}
				fmt.Fprintf(stderr, "  violation: %s\n", v)
			}
		}
		for i, f := range res.Findings {
			if i == 5 {
				fmt.Fprintf(stderr, "  … %d more bugs found\n", len(res.Findings)-5)
				break
			}
			fmt.Fprintf(stderr, "  bug (%s): %s\n", f.Kind, f.Text)
		}
		fmt.Fprintf(stderr, "presence-chaos: %s: %s (took %s)\n", sc.Title, res.Measured, chaos.Dur(res.Took))
		results = append(results, res)
	}
	if keepLogs && *logs == "" {
		// Keep the logs of a failed run out of the temporary directory.
		kept, err := os.MkdirTemp("", "presence-chaos-logs-")
		if err == nil && os.Rename(logDir, filepath.Join(kept, "logs")) == nil {
			fmt.Fprintf(stderr, "presence-chaos: cluster logs kept in %s\n", filepath.Join(kept, "logs"))
		}
	}

	table := fmt.Sprintf("Chaos scenarios, %s size, %s:\n\n%s", sz, time.Now().UTC().Format("2006-01-02"), chaos.Table(results))
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			return 2, err
		}
	}
	if ctx.Err() != nil {
		return 2, ctx.Err()
	}
	if failed {
		return 1, nil
	}
	return 0, nil
}

// runOne runs a scenario on a fresh cluster.
func runOne(ctx context.Context, sc chaos.Scenario, bin, deploy, work, logDir string, stderr io.Writer) (*chaos.Result, string, error) {
	logFile := filepath.Join(logDir, sc.Name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		return nil, logFile, err
	}
	defer f.Close()
	creds := chaos.Creds{Key: "chaos", Secret: randomSecret()}
	top, err := cluster.Default().Without(cluster.LB).WithFreePorts()
	if err != nil {
		return nil, logFile, err
	}
	data, err := os.MkdirTemp(work, sc.Name+"-")
	if err != nil {
		return nil, logFile, err
	}
	defer os.RemoveAll(data)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	c, err := cluster.Start(sctx, cluster.Config{
		Topology: top, BinDir: bin, DeployDir: deploy, DataDir: data,
		APIKey: creds.Key, APISecret: creds.Secret, Env: sc.Env, Log: f,
	})
	cancel()
	if err != nil {
		return nil, logFile, err
	}
	defer c.Close()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "  %s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		c.Printf("chaos: "+format, args...)
	}
	env := chaos.NewEnv(c, creds, logf)
	defer env.Close()
	rctx, rcancel := context.WithTimeout(ctx, sc.Timeout)
	defer rcancel()
	res, err := sc.Run(rctx, env)
	return res, logFile, err
}

func names() string {
	s := ""
	for i, sc := range chaos.All(chaos.Small) {
		if i > 0 {
			s += ", "
		}
		s += sc.Name
	}
	return s
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
