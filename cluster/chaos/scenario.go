// Package chaos breaks a running Presence cluster (cluster.Start: real
// processes on loopback) the ways production breaks, and checks what users
// and watchers see: kill -9 of a gateway, a client gone silent, kill -9 of a
// worker mid-stream, kill -9 of a NATS node, a graceful drain, a reconnect
// storm, and the loss of the presence bucket.
//
// Every scenario asserts on two things: the state the REST API (or, for the
// KV loss, KV itself) reports, and what watcher sockets received — per user,
// the user.presence.changed events in order, each transition exactly once.
// Waits are on conditions with deadlines; the only timed waits are the
// clients' own (the SDK's reconnect backoff, a pause between sessions) and,
// where something must NOT happen, an observation window said to be one.
//
// Each scenario comes in two sizes: Small runs in `make test` (package
// cluster's TestChaos* tests), Full in `make chaos` (cmd/presence-chaos),
// which prints the results as a markdown table.
package chaos

import (
	"context"
	"time"
)

// Size says how big a scenario runs.
type Size int

const (
	// Small is make test's: seconds, a few hundred clients at most, short
	// leases and timeouts.
	Small Size = iota
	// Full is make chaos's: thousands of clients, repeated runs, the
	// production defaults wherever the scenario is about them.
	Full
)

func (s Size) String() string {
	if s == Full {
		return "full"
	}
	return "small"
}

// Scenario is one failure to inflict on a fresh cluster.
type Scenario struct {
	// Name is short and stable ("kill-gateway"); Title is the table's.
	Name  string
	Title string
	// Env is given to every service of the cluster (PRESENCE_LEASE_TTL…).
	Env map[string]string
	// Timeout bounds Run.
	Timeout time.Duration
	// Run runs the scenario on the cluster. An error means it could not
	// run; what it found wrong is in the Result.
	Run func(ctx context.Context, e *Env) (*Result, error)
}

// All is every scenario, in the table's order.
func All(s Size) []Scenario {
	return []Scenario{
		KillGateway(s), SilentClient(s), WorkerKill(s), NATSKill(s), Drain(s), Storm(s), Swap(s), KVLoss(s), KVPurge(s), CPUHog(s),
	}
}

func (s Scenario) run(f func(ctx context.Context, e *Env, r *Result) error) Scenario {
	// Every client of a scenario connects from loopback: one address,
	// whose connects the gateways would hold to one client's rate.
	if s.Env == nil {
		s.Env = map[string]string{}
	}
	s.Env["PRESENCE_CONNECT_RATE_PER_IP"] = "0"
	s.Run = func(ctx context.Context, e *Env) (*Result, error) {
		r := &Result{Scenario: s.Title}
		began := time.Now()
		err := f(ctx, e, r)
		r.Took = time.Since(began)
		return r, err
	}
	return s
}

func dur(d time.Duration) string { return d.String() }
