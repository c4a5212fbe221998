package cluster

import (
	"strings"
	"testing"
)

func TestTopologyCheck(t *testing.T) {
	if err := Default().Check(); err != nil {
		t.Fatal(err)
	}
	dup := Default()
	dup.Nodes = append(dup.Nodes, Node{Name: "gateway-3", Kind: Gateway, Port: 8801})
	bad := map[string]Topology{
		"duplicate port":  dup,
		"duplicate name":  {Replicas: 1, Nodes: []Node{{Name: "nats-1", Kind: NATS, Port: 1}, {Name: "nats-1", Kind: NATS, Port: 2}}},
		"no NATS":         {Replicas: 1, Nodes: []Node{{Name: "worker-1", Kind: Worker}}},
		"replicas > NATS": {Replicas: 3, Nodes: []Node{{Name: "nats-1", Kind: NATS, Port: 1}}},
		"unknown kind":    {Replicas: 1, Nodes: []Node{{Name: "nats-1", Kind: NATS, Port: 1}, {Name: "x", Kind: "x"}}},
	}
	for what, top := range bad {
		if top.Check() == nil {
			t.Errorf("%s: Check passed", what)
		}
	}
}

func TestWithFreePorts(t *testing.T) {
	top, err := Default().WithFreePorts()
	if err != nil {
		t.Fatal(err)
	}
	if err := top.Check(); err != nil {
		t.Fatal(err)
	}
	def := Default()
	for i, n := range top.Nodes {
		if len(n.Ports()) != len(def.Nodes[i].Ports()) || n.Name != def.Nodes[i].Name {
			t.Errorf("%s: ports %v, default %v", n.Name, n.Ports(), def.Nodes[i].Ports())
		}
	}
}

func TestEnv(t *testing.T) {
	top := Default()
	env, _ := top.Env("gateway-2", Loopback)
	if env["PRESENCE_NATS_URL"] != "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224" ||
		env["PRESENCE_WS_ADDR"] != "127.0.0.1:8802" || env["PRESENCE_NODE_NAME"] != "gateway-2" || env["PRESENCE_REPLICAS"] != "3" {
		t.Errorf("gateway-2 on loopback: %v", env)
	}
	// Behind the load balancer a gateway believes its X-Forwarded-For;
	// without one it has no proxy to believe.
	if env["PRESENCE_TRUSTED_PROXIES"] != "127.0.0.1,::1" {
		t.Errorf("gateway-2 on loopback trusts proxies %q, want the load balancer's 127.0.0.1,::1", env["PRESENCE_TRUSTED_PROXIES"])
	}
	if env, _ := top.Without(LB).Env("gateway-2", Loopback); env["PRESENCE_TRUSTED_PROXIES"] != "" {
		t.Errorf("gateway-2 without a load balancer trusts proxies %q", env["PRESENCE_TRUSTED_PROXIES"])
	}
	// A worker serves /metrics, /healthz and /readyz on its own port.
	env, _ = top.Env("worker-2", Compose)
	if env["PRESENCE_HTTP_ADDR"] != "0.0.0.0:8092" || env["PRESENCE_WORKER_NAME"] != "worker-2" {
		t.Errorf("worker-2 in compose: %v", env)
	}
	if p, _ := top.Probe("worker-1", Loopback); strings.Join(p, " ") != "http http://127.0.0.1:8091/readyz" {
		t.Errorf("worker-1's probe %q", p)
	}
	env, _ = top.Env("nats-3", Compose)
	if env["NATS_ROUTES"] != "[nats://nats-1:6222, nats://nats-2:6223, nats://nats-3:6224]" || env["NATS_LISTEN"] != "0.0.0.0:4224" {
		t.Errorf("nats-3 in compose: %v", env)
	}
	env, _ = top.Env("lb", Compose)
	if env["LB_API_SERVERS"] != "server api-1:3031; server api-2:3032;" {
		t.Errorf("lb in compose: %v", env)
	}
	if _, err := top.Env("nope", Loopback); err == nil {
		t.Error("Env of an unknown node")
	}
	waves := startWaves(top)
	var got []string
	for _, w := range waves {
		var names []string
		for _, n := range w {
			names = append(names, n.Name)
		}
		got = append(got, strings.Join(names, " "))
	}
	want := []string{"nats-1 nats-2 nats-3", "worker-1", "worker-2 gateway-1 gateway-2 api-1 api-2", "lb"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("start waves %q, want %q", got, want)
	}
}

// TestEveryServiceIsScraped: Prometheus reads every gateway, worker and
// api node, so each has a port for /metrics; NATS and nginx have none.
func TestEveryServiceIsScraped(t *testing.T) {
	for _, n := range Default().Nodes {
		service := n.Kind == Gateway || n.Kind == Worker || n.Kind == API
		if got := n.MetricsPort(); (got != 0) != service || (service && got != n.Port) {
			t.Errorf("%s (%s) serves /metrics on port %d", n.Name, n.Kind, got)
		}
	}
}
