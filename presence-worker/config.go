package worker

import (
	"flag"
	"time"
)

// Config of a presence worker. Every field has a flag and a PRESENCE_*
// variable (see docs/config.md).
type Config struct {
	NATSURL string
	// Name identifies the worker in logs.
	Name string
	// Shards is how many users the worker processes at once; one user's
	// events always go to the same shard, in order.
	Shards int
	// ActiveInterval must match the gateways': input events are kept for
	// twice as long, so a node's live connections can be found from them.
	ActiveInterval time.Duration
	// Replicas of the stream and buckets this worker creates if missing.
	Replicas int
}

// RegisterFlags binds the config to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	fs.StringVar(&c.Name, "worker-name", "worker-1", "name of this worker (logs)")
	fs.IntVar(&c.Shards, "shards", 64, "users processed concurrently")
	fs.DurationVar(&c.ActiveInterval, "active-interval", 15*time.Minute, "how often a live connection refreshes last_active")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of JetStream streams and buckets")
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "worker-1"
	}
	if c.Shards <= 0 {
		c.Shards = 64
	}
	if c.ActiveInterval <= 0 {
		c.ActiveInterval = 15 * time.Minute
	}
}
