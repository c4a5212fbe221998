package api

import (
	"flag"
	"os"
	"strings"

	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
)

// Config configures an api node. Every flag is also read from PRESENCE_<FLAG>
// (pkg/config).
type Config struct {
	NATSURL string
	// NATSUser and NATSPassword are the node's NATS credentials (pkg/natsauth).
	NATSUser, NATSPassword string
	HTTPAddr               string
	APIKey                 string
	APISecret              string
	APISecretPrevious      string
	DevTokens              bool
	// IndexDir holds the node's bbolt query index; empty means a temporary
	// directory removed on Close.
	IndexDir string
	// NodeName names this api node (the index file); defaults to the host name.
	NodeName string
	// Replicas of the JetStream stream and buckets, passed to store.Setup.
	Replicas int
	// RateLimitUser bounds the requests one user (a client-side caller)
	// makes to one endpoint (method and route) in a minute; RateLimitAPIKey
	// bounds all the requests with the API key in a minute, server-side
	// ones too. Past either the answer is 429 with code 9, and every answer
	// carries X-RateLimit-* headers. Both count on this node only: behind
	// a load balancer over N nodes a user may make up to N times as many.
	// 0: no limit.
	//
	// Stream allows a user 60 a minute per endpoint. 300 leaves an app
	// written for Stream, one that polls a presence list every second and
	// the re-watch after each reconnect (one POST /channels) far below it,
	// and holds one user's flood to 5 a second per endpoint. 120,000 a
	// minute, 2,000 a second, is about what a node serves of its cheapest
	// queries on two cores (BENCHMARKS.md) and above the re-watches of a
	// reconnect storm of tens of thousands of clients; past it a flood is
	// refused cheaply instead of queueing everyone behind it.
	RateLimitUser   int
	RateLimitAPIKey int
}

// RegisterFlags binds c's fields to flags in fs, with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	natsconn.RegisterCredentialFlags(fs, &c.NATSUser, &c.NATSPassword, natsauth.API)
	fs.StringVar(&c.HTTPAddr, "http-addr", ":3030", "address the REST API listens on")
	fs.StringVar(&c.APIKey, "api-key", "", "API key clients send as api_key (required)")
	fs.StringVar(&c.APISecret, "api-secret", "", "secret that signs tokens (required)")
	fs.StringVar(&c.APISecretPrevious, "api-secret-previous", "", "previous secret, still accepted during a rotation")
	fs.BoolVar(&c.DevTokens, "dev-tokens", false, "accept the SDK's unsigned development tokens (never in production)")
	fs.StringVar(&c.IndexDir, "index-dir", "", "directory of the local query index (default: a temporary directory)")
	fs.StringVar(&c.NodeName, "node-name", "api-1", "unique name of this api node (names its index file)")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of the JetStream stream and buckets (3 in a cluster)")
	fs.IntVar(&c.RateLimitUser, "rate-limit-user", 300, "requests one user may make to one endpoint of this node per minute (0: no limit)")
	fs.IntVar(&c.RateLimitAPIKey, "rate-limit-api-key", 120000, "requests with the API key this node answers per minute, from all callers (0: no limit)")
}

// defaultNodeName is the host name reduced to the node-name charset.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "api"
	}
	return sanitizeNode(h)
}

func sanitizeNode(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '-'
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
