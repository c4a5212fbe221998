package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/presencehq/presence/bench/hostile"
)

// attackLead is how long the attack runs before its phase is measured, so
// the measurement sees it in force (every deaf socket connected and
// watching, every stall holding a connection) rather than arriving.
const attackLead = 2 * time.Second

// underAttack (scenario hostile): the latency scenario's measurement twice
// on one server, with its per-address connect limit on as deployed — first
// idle, then while bench/hostile's DefaultMix attacks it (floods of health
// checks, oversized frames, garbage, deaf sockets watching the measured
// members, stalled handshakes, bad tokens, slow queries). Each phase has
// members of its own, all new to the server, so the two start alike. The
// issue's target: the attacked p50 and p99 within 2× of the idle ones.
//
// The good clients dial from their own loopback addresses, under the
// limit; the attackers dial from 127.0.0.1, which the server trusts as a
// proxy, and each names its own address in X-Forwarded-For, so the
// per-address limit meets every one of them as it would behind a load
// balancer. The attackers run in this process, on the server's cores.
func underAttack(ctx context.Context, e env, srv *server) ([]Result, []Series, error) {
	p := e.p.latency
	sys := srv.client(sources(block(60, srv), 0, 4))
	idleMembers, attackMembers := memberNames("hostile-idle", p.Members), memberNames("hostile-attack", p.Members)
	const watcher, cid = "hostile-watcher", "bench-hostile"
	all := append(append([]string{watcher}, idleMembers...), attackMembers...)
	if err := sys.Setup(ctx, map[string][]string{cid: all}); err != nil {
		return nil, nil, err
	}
	clock := newTransitions()
	wc, err := sys.Watch(ctx, 0, watcher, []string{cid}, clock.seen)
	if err != nil {
		return nil, nil, err
	}
	defer wc.Close()

	logf(srv, "hostile", "idle: %d members, %.0f transitions/s for %s", p.Members, p.Rate, p.For)
	idle, idleCPU, err := busy(srv, func() (measured, error) { return clock.run(ctx, sys, cid, idleMembers, p) })
	if err != nil {
		return nil, nil, err
	}
	logf(srv, "hostile", "idle: %s: p50 %.2f ms, p99 %.2f ms; %s", idle, idle.quantile(0.5), idle.quantile(0.99), idleCPU)

	actx, stop := context.WithCancel(ctx)
	done := make(chan []hostile.Outcome, 1)
	target := hostile.Target{WSURL: srv.wsURL, HTTPURL: srv.httpURL, Key: benchKey, Secret: benchSecret}
	mix := hostile.DefaultMix(attackMembers)
	go func() { done <- hostile.Attack(actx, target, mix) }()
	var outcomes []hostile.Outcome
	endAttack := sync.OnceFunc(func() { stop(); outcomes = <-done })
	defer endAttack()
	logf(srv, "hostile", "attack: %d flooders, %d oversized, %d garbage, %d deaf, %d stalled, %d bad tokens, %d slow queries; measured after %s",
		mix.Flooders, mix.Oversized, mix.Garbage, mix.Deaf, mix.Stalled, mix.BadTokens, mix.SlowQueries, attackLead)
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-time.After(attackLead):
	}
	saved := srv.cpuProfile(p.For, filepath.Join(e.dir, "hostile-"+srv.system+".pprof"))
	attacked, attackCPU, err := busy(srv, func() (measured, error) { return clock.run(ctx, sys, cid, attackMembers, p) })
	if perr := saved(); perr != nil {
		logf(srv, "hostile", "CPU profile: %v", perr)
	}
	if err != nil {
		return nil, nil, err
	}
	endAttack()
	var what []string
	for _, o := range hostile.ByKind(outcomes) {
		what = append(what, o.String())
	}
	logf(srv, "hostile", "what the server did to the attackers: %s", strings.Join(what, "; "))

	p50, p99 := attacked.quantile(0.5)/idle.quantile(0.5), attacked.quantile(0.99)/idle.quantile(0.99)
	verdict := "holds"
	if p50 > 2 || p99 > 2 || attacked.lost > 0 {
		verdict = "misses"
	}
	logf(srv, "hostile", "attacked: %s: p50 %.2f ms (%.2f× idle), p99 %.2f ms (%.2f× idle); %s; within 2× of idle, nothing lost: %s",
		attacked, attacked.quantile(0.5), p50, attacked.quantile(0.99), p99, attackCPU, verdict)
	res := []Result{
		{Metric: "idle_p50_ms", Value: idle.quantile(0.5), Unit: "ms"},
		{Metric: "idle_p99_ms", Value: idle.quantile(0.99), Unit: "ms"},
		{Metric: "attack_p50_ms", Value: attacked.quantile(0.5), Unit: "ms"},
		{Metric: "attack_p99_ms", Value: attacked.quantile(0.99), Unit: "ms"},
		{Metric: "p50_ratio", Value: p50, Unit: "×"},
		{Metric: "p99_ratio", Value: p99, Unit: "×"},
		{Metric: "idle_transitions", Value: float64(len(idle.samples)), Unit: "transitions"},
		{Metric: "attack_transitions", Value: float64(len(attacked.samples)), Unit: "transitions"},
		{Metric: "idle_lost", Value: float64(idle.lost), Unit: "transitions"},
		{Metric: "attack_lost", Value: float64(attacked.lost), Unit: "transitions"},
		{Metric: "idle_server_cores", Value: idleCPU.server, Unit: "cores"},
		{Metric: "attack_server_cores", Value: attackCPU.server, Unit: "cores"},
		{Metric: "attack_bench_cores", Value: attackCPU.bench, Unit: "cores"},
	}
	series := []Series{
		{Name: "idle_" + latencySamples, Y: idle.inOrder(), YUnit: "ms"},
		{Name: "attack_" + latencySamples, Y: attacked.inOrder(), YUnit: "ms"},
	}
	return res, series, nil
}

// cores is how much CPU the server and this process (the good clients
// and, under attack, the attackers) used on average over a phase: on a
// machine of two cores, what the attackers burn themselves is taken from
// the server.
type cores struct{ server, bench float64 }

func (c cores) String() string {
	return fmt.Sprintf("the server used %.2f cores, the clients %.2f", c.server, c.bench)
}

// busy runs run and measures the cores used meanwhile.
func busy(srv *server, run func() (measured, error)) (measured, cores, error) {
	began := time.Now()
	s0, err := cpuTime(srv.cmd.Process.Pid)
	if err != nil {
		return measured{}, cores{}, err
	}
	b0, err := cpuTime(os.Getpid())
	if err != nil {
		return measured{}, cores{}, err
	}
	m, err := run()
	if err != nil {
		return m, cores{}, err
	}
	s1, err := cpuTime(srv.cmd.Process.Pid)
	if err != nil {
		return m, cores{}, err
	}
	b1, err := cpuTime(os.Getpid())
	if err != nil {
		return m, cores{}, err
	}
	took := time.Since(began).Seconds()
	return m, cores{server: (s1 - s0).Seconds() / took, bench: (b1 - b0).Seconds() / took}, nil
}
