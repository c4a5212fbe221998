package cluster_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/presencehq/presence/cluster"
	"github.com/presencehq/presence/cluster/chaos"
)

// runChaos runs a scenario at make test's size on a fresh cluster of
// processes (3 NATS nodes, 2 workers, 2 gateways, 2 api nodes, no load
// balancer) and fails the test on every broken invariant. Bugs the scenario
// observes without asserting them are logged; the chaosbug tests assert
// them.
func init() {
	// The storm's clients run in child processes of the test binary.
	cluster.ChildMain = func(args []string) bool {
		if len(args) == 0 || args[0] != chaos.StormClientsCommand {
			return false
		}
		if err := chaos.ServeStormClients(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "storm-clients:", err)
			os.Exit(1)
		}
		return true
	}
}

func runChaos(t *testing.T, sc chaos.Scenario) *chaos.Result {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	top, err := cluster.Default().Without(cluster.LB).WithFreePorts()
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.StartForTest(t, top, sc.Env)
	env := chaos.NewEnv(c, chaos.Creds{Key: cluster.TestAPIKey, Secret: cluster.TestAPISecret}, t.Logf)
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), sc.Timeout)
	defer cancel()
	res, err := sc.Run(ctx, env)
	if res != nil {
		t.Logf("%s: %s; measured %s (expected %s); took %s", res.Scenario, res.Setup, res.Measured, res.Expected, chaos.Dur(res.Took))
		for _, v := range res.Violations {
			t.Errorf("%s: %s", res.Scenario, v)
		}
		for _, f := range res.Findings {
			t.Logf("%s: BUG %s (asserted only with -tags chaosbug): %s", res.Scenario, f.Kind, f.Text)
		}
	}
	if err != nil {
		t.Fatalf("%s could not run: %v", sc.Name, err)
	}
	return res
}

// TestChaosKillGateway: kill -9 of gateway-1 takes its users offline within
// the lease, exactly once each for the watcher; gateway-2's users never
// move (I4); gateway-1 restarts under its name and takes users again (I6).
func TestChaosKillGateway(t *testing.T) { runChaos(t, chaos.KillGateway(chaos.Small)) }

// TestChaosSilentClient: sockets whose traffic is black-holed are dropped
// within ping interval + timeout and their users go offline once; a user
// with another, healthy socket stays online without a flap.
func TestChaosSilentClient(t *testing.T) { runChaos(t, chaos.SilentClient(chaos.Small)) }

// TestChaosWorkerKill: kill -9 of worker-1 while users connect and
// disconnect steadily loses no transition and applies none twice (I5):
// every watcher gets each user's sessions as on/off pairs, in order, and the
// final REST state is the truth.
func TestChaosWorkerKill(t *testing.T) { runChaos(t, chaos.WorkerKill(chaos.Small)) }

// TestChaosNATSKill: kill -9 of the NATS node leading the input stream (one
// of three): the services reconnect, transitions flow again, no user is
// stuck and nothing is lost or duplicated.
func TestChaosNATSKill(t *testing.T) { runChaos(t, chaos.NATSKill(chaos.Small)) }

// TestChaosDrain: SIGTERM of gateway-1 closes its sockets with 1012 over the
// drain window; clients reconnect to gateway-2 within the grace and no
// watcher sees an offline→online flap; users who do not come back go
// offline once, after the grace.
func TestChaosDrain(t *testing.T) { runChaos(t, chaos.Drain(chaos.Small)) }

// TestChaosStorm: a few hundred clients over both gateways lose their
// sockets at once and reconnect with the SDK's jittered backoff; the connect
// limit answers code 9 and they retry; the gateways stay up, and REST and
// both watchers end at the truth with no transition received twice.
func TestChaosStorm(t *testing.T) { runChaos(t, chaos.Storm(chaos.Small)) }

// TestChaosKVLoss: the presence bucket is deleted in the running cluster;
// within two lease periods KV says every connected user is online and
// everyone else (including users who left during the loss) offline, and
// transitions flow again.
func TestChaosKVLoss(t *testing.T) { runChaos(t, chaos.KVLoss(chaos.Small)) }

// TestChaosSwap: users close a socket and open another at the same moment,
// again and again, so their closed and opened events are applied by two
// workers whose publishes race; every watcher still gets each user's
// transitions once and in order, never the same state twice in a row (I2).
func TestChaosSwap(t *testing.T) { runChaos(t, chaos.Swap(chaos.Small)) }

// TestChaosKVPurge: the presence bucket is purged (empty, but there): the
// workers find their sentinel missing and rebuild the state the same way.
func TestChaosKVPurge(t *testing.T) { runChaos(t, chaos.KVPurge(chaos.Small)) }

// TestChaosCPUHog: two busy loops per core for 10 s while users churn; a
// 2 s lease must never be expired, nor a staying user read offline (I4).
func TestChaosCPUHog(t *testing.T) { runChaos(t, chaos.CPUHog(chaos.Small)) }
