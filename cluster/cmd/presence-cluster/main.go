// Command presence-cluster runs Presence's multi-node topology as plain
// processes on loopback, in the foreground (make cluster): 3 NATS nodes with
// JetStream, 2 workers, 2 gateways, 2 api nodes and nginx in front. Ctrl-C
// stops everything in order (gateways drain first, NATS last); a second
// Ctrl-C kills everything at once.
//
// Run it from the repository's root. Environment: PRESENCE_DATA_DIR (default
// ./data; the cluster keeps its data and pid files in <dir>/cluster),
// PRESENCE_API_KEY (default presence), PRESENCE_API_SECRET (generated and
// kept in <dir>/cluster/api-secret when unset). Every other PRESENCE_*
// variable is passed on to the services (PRESENCE_DEV_TOKENS=true, say).
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
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/presencehq/presence/cluster"
	"github.com/presencehq/presence/pkg/natsauth"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presence-cluster:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("presence-cluster", flag.ContinueOnError)
	bin := fs.String("bin", "./bin", "directory of nats-server, presence-worker, presence-gateway, presence-api")
	build := fs.Bool("build", false, "build those binaries into -bin first (from the workspace in the current directory)")
	deploy := fs.String("deploy", "./deploy", "the repository's deploy/ directory (NATS and nginx configuration)")
	nginx := fs.String("nginx", "", "nginx binary (default: found on $PATH or in /usr/sbin)")
	noLB := fs.Bool("no-lb", false, "run without the nginx load balancer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dataDir := getenv("PRESENCE_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	dataDir = filepath.Join(dataDir, "cluster")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	key := getenv("PRESENCE_API_KEY")
	if key == "" {
		key = "presence"
	}
	secret, generated, err := loadSecret(getenv("PRESENCE_API_SECRET"), dataDir)
	if err != nil {
		return err
	}

	// The first Ctrl-C (or SIGTERM) stops everything in order, the second
	// kills it all.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running atomic.Pointer[cluster.Cluster]
	killed := make(chan struct{})
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(stdout, "presence-cluster: killing everything")
		if c := running.Load(); c != nil {
			c.KillAll()
		}
		close(killed)
	}()

	if *build {
		fmt.Fprintln(stdout, "presence-cluster: building binaries into", *bin)
		if err := cluster.Build(ctx, ".", *bin, stdout); err != nil {
			return err
		}
	}

	top := cluster.Default()
	nginxPath := ""
	if *noLB {
		top = top.Without(cluster.LB)
	} else if nginxPath, err = cluster.FindNginx(*nginx); err != nil {
		top = top.Without(cluster.LB)
		fmt.Fprintf(stdout, "\npresence-cluster: nginx is not installed, so the load balancer (:3030 REST + /connect, :8800 /connect)\n"+
			"will not run; use the nodes' own ports below. To get it, %s\n\n", cluster.NginxInstallHint)
	}

	began := time.Now()
	c, err := cluster.Start(ctx, cluster.Config{
		Topology:  top,
		BinDir:    *bin,
		DeployDir: *deploy,
		DataDir:   dataDir,
		APIKey:    key,
		APISecret: secret,
		Nginx:     nginxPath,
		Log:       stdout,
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "presence-cluster: interrupted while starting; stopped")
			return nil
		}
		return err
	}
	running.Store(c)
	printBanner(stdout, c, key, secret, generated, time.Since(began))

	<-ctx.Done()
	c.Printf("stopping: gateways drain first, NATS last (Ctrl-C again to kill everything now)")
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
		c.Printf("stopped")
	case <-killed:
	}
	return nil
}

// loadSecret returns the configured secret, or the one kept in dir, or a new
// one saved there (so tokens keep working across runs), as make run does.
func loadSecret(secret, dir string) (string, bool, error) {
	if secret != "" {
		return secret, false, nil
	}
	file := filepath.Join(dir, "api-secret")
	if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), false, nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", false, err
	}
	secret = hex.EncodeToString(buf)
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return secret, true, nil
}

func printBanner(out io.Writer, c *cluster.Cluster, key, secret string, generated bool, took time.Duration) {
	top := c.Topology()
	fmt.Fprintf(out, "\nPresence cluster is running (started in %.1fs): %d NATS nodes (JetStream, %d replicas), %d workers, %d gateways, %d api nodes",
		took.Seconds(), len(top.Of(cluster.NATS)), top.Replicas, len(top.Of(cluster.Worker)), len(top.Of(cluster.Gateway)), len(top.Of(cluster.API)))
	if len(top.Of(cluster.LB)) > 0 {
		fmt.Fprint(out, ", nginx")
	}
	fmt.Fprintln(out, ".")
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	if lb := top.Of(cluster.LB); len(lb) > 0 {
		fmt.Fprintf(tw, "  SDK baseURL (REST + /connect)\t%s\t(nginx)\n", c.URL("lb"))
		fmt.Fprintf(tw, "  WebSocket /connect\t%s\t(nginx)\n", c.ConnectURL("lb"))
	}
	for _, n := range top.Of(cluster.Worker) {
		fmt.Fprintf(tw, "  %s\t%s\t/metrics /healthz /readyz\n", n.Name, c.URL(n.Name))
	}
	for _, n := range top.Of(cluster.Gateway) {
		fmt.Fprintf(tw, "  %s\t%s\t/metrics /healthz /readyz\n", n.Name, c.ConnectURL(n.Name))
	}
	for _, n := range top.Of(cluster.API) {
		fmt.Fprintf(tw, "  %s\t%s\tREST, /metrics /healthz /readyz\n", n.Name, c.URL(n.Name))
	}
	for _, n := range top.Of(cluster.NATS) {
		fmt.Fprintf(tw, "  %s\t%s\tmonitoring http://127.0.0.1:%d\n", n.Name, c.URL(n.Name), n.MonitorPort)
	}
	tw.Flush()
	fmt.Fprintf(out, "  pid files:  %s/<name>.pid\n", c.DataDir())
	fmt.Fprintf(out, "  API key:    %s\n", key)
	fmt.Fprintf(out, "  API secret: %s", secret)
	if generated {
		fmt.Fprintf(out, "  (generated, kept in %s)", filepath.Join(c.DataDir(), "api-secret"))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  Mint a user token: PRESENCE_API_SECRET=%s go run ./allinone/cmd/presence token <user_id>\n", secret)
	fmt.Fprintf(out, "  Watch events:      nats sub --server '%s' 'presence.events.>'\n", c.NATSURLAs(natsauth.Reader))
	fmt.Fprintln(out, "  Ctrl-C stops everything (gateways drain first).")
	fmt.Fprintln(out)
}
