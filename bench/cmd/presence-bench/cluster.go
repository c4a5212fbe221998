package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/presencehq/presence/bench/load"
	"github.com/presencehq/presence/cluster"
)

// clusterIdle is make bench-full's idle at scale: clusterGateways gateways
// of make cluster's topology (3 NATS nodes with JetStream R3, 2 workers,
// 2 api nodes; no load balancer: each load process dials its gateway) hold
// clusterConns clients between them, as real processes on loopback. A
// gateway holds at most 18,000 (a process may hold 20,000 open files here).
// Measured: every gateway's RSS per connection, the connect rate over all.
func clusterIdle(ctx context.Context, e env, gateways, conns int) ([]Result, error) {
	c, stop, err := startCluster(ctx, e, gateways)
	if err != nil {
		return nil, err
	}
	defer stop()
	names := make([]string, gateways)
	pids := make([]int, gateways)
	for i := range names {
		names[i] = fmt.Sprintf("gateway-%d", i+1)
		if pids[i] = c.Pid(names[i]); pids[i] == 0 {
			return nil, fmt.Errorf("%s is not running", names[i])
		}
	}
	before, err := settledRSSes(pids)
	if err != nil {
		return nil, err
	}
	const perProc = 6000
	perGateway := conns / gateways
	procs := (perGateway + perProc - 1) / perProc
	clusterLogf("%d clients over %d gateways, %d load processes each", conns, gateways, procs)
	var loads []*loadProc
	defer func() {
		for _, l := range loads {
			l.stop()
		}
	}()
	began := time.Now()
	for g, name := range names {
		for i := range procs {
			share := (i+1)*perGateway/procs - i*perGateway/procs
			k := g*procs + i
			args := []string{"idle", "-system", presence, "-url", c.ConnectURL(name), "-rest", c.URL("api-1"),
				"-key", benchKey, "-secret", benchSecret, "-src", fmt.Sprintf("127.50.%d.1,127.50.%d.2", k, k),
				"-prefix", fmt.Sprintf("cl%d", k), "-n", strconv.Itoa(share), "-steps", "1"}
			l, err := startLoad(ctx, e.bin, args...)
			if err != nil {
				return nil, err
			}
			loads = append(loads, l)
		}
	}
	total := load.Connected{}
	for _, l := range loads {
		var got load.Connected
		if err := l.result(&got); err != nil {
			return nil, err
		}
		total.Conns += got.Conns
		total.Failed += got.Failed
		total.Retries += got.Retries
	}
	total.Took = time.Since(began)
	after, err := settledRSSes(pids)
	if err != nil {
		return nil, err
	}
	var sum, worst float64
	for i := range pids {
		per := float64(after[i]-before[i]) / float64(perGateway)
		clusterLogf("%s: RSS %.1f -> %.1f MiB, %.1f KB per connection", names[i],
			float64(before[i])/(1<<20), float64(after[i])/(1<<20), per/1000)
		sum += per
		worst = max(worst, per)
	}
	clusterLogf("%d connected (%d failed, %d retried) in %s", total.Conns, total.Failed, total.Retries, total.Took.Round(time.Millisecond))
	if total.Conns < conns {
		return nil, fmt.Errorf("%d of %d clients connected", total.Conns, conns)
	}
	return []Result{
		{Metric: "conns", Value: float64(total.Conns), Unit: "connections"},
		{Metric: "gateways", Value: float64(gateways), Unit: "processes"},
		{Metric: "rss_per_conn_bytes", Value: sum / float64(gateways), Unit: "bytes"},
		{Metric: "rss_per_conn_worst_bytes", Value: worst, Unit: "bytes"},
		{Metric: "connect_per_sec", Value: total.PerSecond(), Unit: "connects/s"},
		{Metric: "reconnect_retries", Value: float64(total.Retries), Unit: "attempts"},
	}, nil
}

// clusterLogf reports the cluster scenario's progress on stderr.
func clusterLogf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "presence-bench: idle-cluster on presence: %s\n", fmt.Sprintf(format, args...))
}

// startCluster builds and starts make cluster's topology with n gateways on
// free loopback ports; stop stops it and removes its data. Its processes'
// output goes to presence-bench-cluster.log in the temporary directory.
func startCluster(ctx context.Context, e env, n int) (c *cluster.Cluster, stop func(), err error) {
	if err := cluster.Build(ctx, ".", e.bin, os.Stderr); err != nil {
		return nil, nil, err
	}
	top := clusterTopology(n)
	if top, err = top.WithFreePorts(); err != nil {
		return nil, nil, err
	}
	data, err := os.MkdirTemp("", "presence-bench-cluster-")
	if err != nil {
		return nil, nil, err
	}
	logPath := filepath.Join(os.TempDir(), "presence-bench-cluster.log")
	logs, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	clusterLogf("starting 3 NATS nodes, 2 workers, %d gateways, 2 api nodes (log: %s)", n, logPath)
	c, err = cluster.Start(ctx, cluster.Config{
		Topology: top, BinDir: e.bin, DeployDir: "deploy", DataDir: data,
		APIKey: benchKey, APISecret: benchSecret, Log: logs,
		// The load's clients all come from loopback addresses: a limit per
		// address would measure the limit.
		Env: map[string]string{"PRESENCE_LOG_LEVEL": "warn", "PRESENCE_CONNECT_RATE_PER_IP": "0"},
	})
	if err != nil {
		logs.Close()
		os.RemoveAll(data)
		return nil, nil, err
	}
	return c, func() { c.Close(); logs.Close(); os.RemoveAll(data) }, nil
}

// clusterTopology is make cluster's topology with n gateways and no load
// balancer.
func clusterTopology(n int) cluster.Topology {
	top := cluster.Default().Without(cluster.LB)
	gw, _ := top.Node("gateway-1")
	var nodes []cluster.Node
	placed := false
	for _, node := range top.Nodes {
		if node.Kind == cluster.Gateway {
			continue
		}
		if node.Kind == cluster.API && !placed { // gateways start before api nodes
			for i := range n {
				g := gw
				g.Name = fmt.Sprintf("gateway-%d", i+1)
				g.Port = gw.Port + i
				nodes = append(nodes, g)
			}
			placed = true
		}
		nodes = append(nodes, node)
	}
	top.Nodes = nodes
	return top
}

// settledRSSes is settledRSS of every pid, sampled side by side.
func settledRSSes(pids []int) ([]int64, error) {
	out := make([]int64, len(pids))
	errs := make([]error, len(pids))
	var wg sync.WaitGroup
	for i, pid := range pids {
		wg.Go(func() { out[i], errs[i] = settledRSS(pid) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
