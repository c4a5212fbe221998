// Package cluster runs Presence's multi-node topology as plain processes on
// loopback: a 3-node NATS cluster with JetStream, presence workers, gateways,
// api nodes and nginx as the load balancer. `make cluster` runs the default
// topology on fixed ports in the foreground; tests start it on free ports in a
// temporary directory and kill, stop and restart its processes by name.
//
// The topology is defined once, here (Default), and docker-compose.yml runs
// the same one: a test reads the compose file and compares every service, its
// environment, its health check and its ports with this definition. Both run
// NATS from deploy/nats/nats.conf and nginx from
// deploy/nginx/presence.conf.template; what differs per node comes from the
// environment (Topology.Env).
package cluster

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Kind is what a node runs.
type Kind string

// The kinds of node, in start order.
const (
	NATS    Kind = "nats"
	Worker  Kind = "worker"
	Gateway Kind = "gateway"
	API     Kind = "api"
	LB      Kind = "lb"
)

// kinds, in start order (see startWaves; Cluster.Close stops them in reverse).
var kinds = []Kind{NATS, Worker, Gateway, API, LB}

// Binary is the program a node of kind k runs ("" for the load balancer,
// which is nginx).
func (k Kind) Binary() string {
	switch k {
	case NATS:
		return "nats-server"
	case Worker:
		return "presence-worker"
	case Gateway:
		return "presence-gateway"
	case API:
		return "presence-api"
	}
	return ""
}

// Node is one process of the topology.
type Node struct {
	Name string
	Kind Kind
	// Port is the node's main listener: NATS clients, a gateway's WebSocket
	// /connect, an api node's REST, a worker's /metrics and probes, or the
	// load balancer's REST + /connect. Every Presence service also serves
	// /metrics, /healthz and /readyz on it.
	Port int
	// ClusterPort (routes) and MonitorPort (/healthz, /connz) of a NATS node.
	ClusterPort int
	MonitorPort int
	// WSPort is the load balancer's /connect-only port (the SDK's default).
	WSPort int
}

// Ports lists every port the node listens on.
func (n Node) Ports() []int {
	var ps []int
	for _, p := range []int{n.Port, n.ClusterPort, n.MonitorPort, n.WSPort} {
		if p != 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

// Topology is every node and the JetStream replication factor.
type Topology struct {
	// Replicas of the JetStream streams and KV buckets; every service is
	// given it (PRESENCE_REPLICAS), and it must not exceed the NATS nodes.
	Replicas int
	// Nodes in start order: NATS, workers, gateways, api nodes, load balancer.
	Nodes []Node
}

// Default is the topology of `make cluster` and docker-compose.yml, on fixed
// ports.
func Default() Topology {
	return Topology{
		Replicas: 3,
		Nodes: []Node{
			{Name: "nats-1", Kind: NATS, Port: 4222, ClusterPort: 6222, MonitorPort: 8222},
			{Name: "nats-2", Kind: NATS, Port: 4223, ClusterPort: 6223, MonitorPort: 8223},
			{Name: "nats-3", Kind: NATS, Port: 4224, ClusterPort: 6224, MonitorPort: 8224},
			{Name: "worker-1", Kind: Worker, Port: 8091},
			{Name: "worker-2", Kind: Worker, Port: 8092},
			{Name: "gateway-1", Kind: Gateway, Port: 8801},
			{Name: "gateway-2", Kind: Gateway, Port: 8802},
			{Name: "api-1", Kind: API, Port: 3031},
			{Name: "api-2", Kind: API, Port: 3032},
			{Name: "lb", Kind: LB, Port: 3030, WSPort: 8800},
		},
	}
}

// Of returns the nodes of kind k, in order.
func (t Topology) Of(k Kind) []Node {
	var out []Node
	for _, n := range t.Nodes {
		if n.Kind == k {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node named name.
func (t Topology) Node(name string) (Node, bool) {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Without returns the topology without the nodes of kind k (a cluster with
// no load balancer: Without(LB)).
func (t Topology) Without(k Kind) Topology {
	out := Topology{Replicas: t.Replicas}
	for _, n := range t.Nodes {
		if n.Kind != k {
			out.Nodes = append(out.Nodes, n)
		}
	}
	return out
}

// Check reports a topology that cannot run: duplicate names or ports, no
// NATS node, more replicas than NATS nodes, at most one load balancer.
func (t Topology) Check() error {
	names := map[string]bool{}
	ports := map[int]string{}
	for _, n := range t.Nodes {
		if n.Name == "" || strings.ContainsAny(n.Name, " /.") {
			return fmt.Errorf("cluster: bad node name %q", n.Name)
		}
		if !slices.Contains(kinds, n.Kind) {
			return fmt.Errorf("cluster: %s: unknown kind %q", n.Name, n.Kind)
		}
		if names[n.Name] {
			return fmt.Errorf("cluster: two nodes named %s", n.Name)
		}
		names[n.Name] = true
		for _, p := range n.Ports() {
			if other, dup := ports[p]; dup {
				return fmt.Errorf("cluster: %s and %s both use port %d", other, n.Name, p)
			}
			ports[p] = n.Name
		}
	}
	nats := len(t.Of(NATS))
	if nats == 0 {
		return fmt.Errorf("cluster: no NATS node")
	}
	if t.Replicas < 1 || t.Replicas > nats {
		return fmt.Errorf("cluster: %d replicas need as many NATS nodes, have %d", t.Replicas, nats)
	}
	if len(t.Of(LB)) > 1 {
		return fmt.Errorf("cluster: more than one load balancer")
	}
	return nil
}

// Net says how nodes listen and reach one another.
type Net struct {
	// Listen is the host every node listens on.
	Listen string
	// Host is the host by which the others reach node.
	Host func(node string) string
	// Proxies are where the load balancer's connections come from: the
	// gateways behind it believe its X-Forwarded-For (PRESENCE_TRUSTED_PROXIES),
	// or every client would share its address and its connect limit.
	Proxies string
}

// Loopback is `make cluster`: every node listens on, and is reached at,
// 127.0.0.1.
var Loopback = Net{Listen: "127.0.0.1", Host: func(string) string { return "127.0.0.1" }, Proxies: "127.0.0.1,::1"}

// Compose is docker-compose.yml: every node listens on all interfaces of its
// container and is reached by its service name, which is the node's name.
// Docker gives the project's network addresses in the private ranges, and
// the gateways publish no port: only containers on it reach them.
var Compose = Net{Listen: "0.0.0.0", Host: func(node string) string { return node }, Proxies: "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// NATSURL is the comma-separated client URL of every NATS node, as services
// are given it.
func (t Topology) NATSURL(n Net) string {
	var urls []string
	for _, s := range t.Of(NATS) {
		urls = append(urls, "nats://"+hostPort(n.Host(s.Name), s.Port))
	}
	return strings.Join(urls, ",")
}

// Env is the part of node's environment the topology decides:
//
//   - services: PRESENCE_NATS_URL, PRESENCE_REPLICAS and their node name and
//     listen address (a worker's serves /metrics, /healthz and /readyz; read
//     by pkg/config as the binaries' flags), and for gateways behind a load
//     balancer PRESENCE_TRUSTED_PROXIES;
//   - NATS: NATS_NAME, NATS_LISTEN, NATS_HTTP, NATS_CLUSTER_LISTEN and
//     NATS_ROUTES, read by deploy/nats/nats.conf;
//   - the load balancer: LB_HTTP_LISTEN, LB_WS_LISTEN, LB_API_SERVERS and
//     LB_GATEWAY_SERVERS, substituted into deploy/nginx/presence.conf.template.
//
// Credentials and data directories are not part of the topology: the runner
// and docker-compose.yml add them.
func (t Topology) Env(name string, n Net) (map[string]string, error) {
	node, ok := t.Node(name)
	if !ok {
		return nil, fmt.Errorf("cluster: no node %q", name)
	}
	service := func() map[string]string {
		return map[string]string{
			"PRESENCE_NATS_URL": t.NATSURL(n),
			"PRESENCE_REPLICAS": strconv.Itoa(t.Replicas),
		}
	}
	switch node.Kind {
	case NATS:
		var routes []string
		for _, s := range t.Of(NATS) {
			routes = append(routes, "nats://"+hostPort(n.Host(s.Name), s.ClusterPort))
		}
		return map[string]string{
			"NATS_NAME":           node.Name,
			"NATS_LISTEN":         hostPort(n.Listen, node.Port),
			"NATS_HTTP":           hostPort(n.Listen, node.MonitorPort),
			"NATS_CLUSTER_LISTEN": hostPort(n.Listen, node.ClusterPort),
			"NATS_ROUTES":         "[" + strings.Join(routes, ", ") + "]",
		}, nil
	case Worker:
		env := service()
		env["PRESENCE_WORKER_NAME"] = node.Name
		env["PRESENCE_HTTP_ADDR"] = hostPort(n.Listen, node.Port)
		return env, nil
	case Gateway:
		env := service()
		env["PRESENCE_NODE_NAME"] = node.Name
		env["PRESENCE_WS_ADDR"] = hostPort(n.Listen, node.Port)
		if len(t.Of(LB)) > 0 {
			env["PRESENCE_TRUSTED_PROXIES"] = n.Proxies
		}
		return env, nil
	case API:
		env := service()
		env["PRESENCE_NODE_NAME"] = node.Name
		env["PRESENCE_HTTP_ADDR"] = hostPort(n.Listen, node.Port)
		return env, nil
	case LB:
		upstream := func(k Kind) string {
			var lines []string
			for _, s := range t.Of(k) {
				lines = append(lines, "server "+hostPort(n.Host(s.Name), s.Port)+";")
			}
			return strings.Join(lines, " ")
		}
		return map[string]string{
			"LB_HTTP_LISTEN":     hostPort(n.Listen, node.Port),
			"LB_WS_LISTEN":       hostPort(n.Listen, node.WSPort),
			"LB_API_SERVERS":     upstream(API),
			"LB_GATEWAY_SERVERS": upstream(Gateway),
		}, nil
	}
	return nil, fmt.Errorf("cluster: %s: unknown kind %q", name, node.Kind)
}

// Probe is the check that node is up and ready, as the arguments of the
// presence-probe command (package probe): docker-compose.yml runs the same
// check as the service's health check, from inside its container. The load
// balancer's check goes through it to a gateway's /readyz.
//
//   - NATS: the monitoring port's /jsz names a JetStream meta leader, and
//     /healthz passes (this node is current with it);
//   - worker: /readyz, which passes once it is connected to NATS with every
//     stream, bucket and its consumer set up (startWaves starts the others
//     after the first worker is ready: they must find them made);
//   - gateway: /readyz;
//   - api: /readyz (it listens only once its index has caught up).
func (t Topology) Probe(name string, n Net) ([]string, error) {
	node, ok := t.Node(name)
	if !ok {
		return nil, fmt.Errorf("cluster: no node %q", name)
	}
	self := func(port int, path string) string { return "http://" + hostPort("127.0.0.1", port) + path }
	switch node.Kind {
	case NATS:
		return []string{"nats", self(node.MonitorPort, "")}, nil
	case Worker, Gateway, API:
		return []string{"http", self(node.Port, "/readyz")}, nil
	case LB:
		return []string{"http", self(node.WSPort, "/readyz")}, nil
	}
	return nil, fmt.Errorf("cluster: %s: unknown kind %q", name, node.Kind)
}

// WithFreePorts returns a copy of t with every port replaced by one that is
// free on 127.0.0.1 now (for tests running clusters side by side).
func (t Topology) WithFreePorts() (Topology, error) {
	out := Topology{Replicas: t.Replicas, Nodes: slices.Clone(t.Nodes)}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	free := func(p *int) error {
		if *p == 0 {
			return nil
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		held = append(held, l)
		*p = l.Addr().(*net.TCPAddr).Port
		return nil
	}
	for i := range out.Nodes {
		n := &out.Nodes[i]
		for _, p := range []*int{&n.Port, &n.ClusterPort, &n.MonitorPort, &n.WSPort} {
			if err := free(p); err != nil {
				return Topology{}, fmt.Errorf("cluster: free port: %w", err)
			}
		}
	}
	return out, nil
}
