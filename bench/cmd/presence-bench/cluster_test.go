package main

import (
	"testing"

	"github.com/presencehq/presence/cluster"
)

func TestClusterTopologyHasTheGatewaysBeforeTheAPINodes(t *testing.T) {
	top := clusterTopology(5)
	if err := top.Check(); err != nil {
		t.Fatal(err)
	}
	var kinds []cluster.Kind
	for _, n := range top.Nodes {
		kinds = append(kinds, n.Kind)
	}
	if got := len(top.Of(cluster.Gateway)); got != 5 {
		t.Fatalf("%d gateways, want 5: %v", got, kinds)
	}
	if len(top.Of(cluster.LB)) != 0 || len(top.Of(cluster.NATS)) != 3 || len(top.Of(cluster.API)) != 2 {
		t.Fatalf("nodes %v: want 3 NATS, 2 api, no load balancer", kinds)
	}
	last := map[cluster.Kind]int{}
	for i, n := range top.Nodes {
		last[n.Kind] = i
	}
	if first := len(top.Nodes) - len(top.Of(cluster.API)); last[cluster.Gateway] >= first {
		t.Fatalf("a gateway starts after an api node: %v", kinds)
	}
}
