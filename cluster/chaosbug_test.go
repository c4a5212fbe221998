//go:build chaosbug

package cluster_test

// Chaos tests of bugs found and not yet fixed, kept out of make test:
//
//	go test -tags chaosbug -run ChaosBug -v ./cluster/
//
// Each fails until its bug is fixed; then its check becomes a violation in
// the scenario (and so part of make test) and the test goes.

import (
	"fmt"
	"testing"

	"github.com/presencehq/presence/cluster/chaos"
)

func assertNoFinding(t *testing.T, res *chaos.Result, kind string) {
	t.Helper()
	for _, f := range res.Findings {
		if f.Kind == kind {
			t.Error(f.Text)
		}
	}
}

// TestChaosBugNATSKillTransitions: around the kill -9 of the NATS node
// leading the input stream, a user's transition can go missing for a
// watcher. Seen once in six make test runs: nk-u00019 connected through
// gateway-2 right after the kill (a first attempt failed after 10 s with
// "connect: publish opened … context deadline exceeded", which makes the
// gateway publish a compensating close); its next connect got
// connection.ok, but neither watcher received its online within 45 s, and
// one received an extra offline ("… on off off"). Intermittent: this runs
// the scenario three times.
func TestChaosBugNATSKillTransitions(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			assertNoFinding(t, runChaos(t, chaos.NATSKill(chaos.Small)), chaos.NATSKillTransitions)
		})
	}
}
