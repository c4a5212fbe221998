package worker

import (
	"flag"
	"time"

	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
)

// Config of a presence worker. Every field has a flag and a PRESENCE_*
// variable (see docs/config.md).
type Config struct {
	NATSURL string
	// NATSUser and NATSPassword are the node's NATS credentials (pkg/natsauth).
	NATSUser, NATSPassword string
	// Name identifies the worker in logs.
	Name string
	// HTTPAddr serves /metrics, /healthz and /readyz (Run only).
	HTTPAddr string
	// Shards is how many users the worker processes at once; one user's
	// events always go to the same shard, in order. Each waits on a
	// JetStream round trip per event, which grows to milliseconds when the
	// machine is busy: 256 kept an 18,000-client storm's backlog draining
	// (64 took a second longer; 1,024 swamped JetStream and stalled).
	Shards int
	// ActiveInterval must match the gateways': input events are kept for
	// twice as long, so a node's live connections can be found from them.
	ActiveInterval time.Duration
	// Replicas of the stream and buckets this worker creates if missing.
	Replicas int
	// LeaseCheck is how often gateway leases are checked for expiry.
	LeaseCheck time.Duration
	// OfflineGrace delays every offline transition: a user who reconnects
	// within it never reads offline. 0 (the default, as Stream does): offline
	// at once. Drained gateways ask for their own grace per connection.
	OfflineGrace time.Duration
	// MaxAckPending bounds the input events in flight to all workers at once.
	MaxAckPending int
}

// RegisterFlags binds the config to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	natsconn.RegisterCredentialFlags(fs, &c.NATSUser, &c.NATSPassword, natsauth.Worker)
	fs.StringVar(&c.Name, "worker-name", "worker-1", "name of this worker (logs)")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8090", "address serving /metrics, /healthz and /readyz")
	fs.IntVar(&c.Shards, "shards", 256, "users processed concurrently")
	fs.DurationVar(&c.ActiveInterval, "active-interval", 15*time.Minute, "how often a live connection refreshes last_active")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of JetStream streams and buckets")
	fs.DurationVar(&c.LeaseCheck, "lease-check", 250*time.Millisecond, "how often gateway leases are checked for expiry")
	fs.DurationVar(&c.OfflineGrace, "offline-grace", 0, "delay every offline transition by this much (0: offline at once)")
	fs.IntVar(&c.MaxAckPending, "max-ack-pending", 20000, "input events in flight to all workers at once")
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "worker-1"
	}
	if c.Shards <= 0 {
		c.Shards = 256
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 20000
	}
	if c.LeaseCheck <= 0 {
		c.LeaseCheck = 250 * time.Millisecond
	}
	if c.ActiveInterval <= 0 {
		c.ActiveInterval = 15 * time.Minute
	}
}
