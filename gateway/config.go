package gateway

import (
	"flag"
	"time"
)

// Config of a gateway node. Every field has a flag and a PRESENCE_* variable
// (see docs/config.md).
type Config struct {
	NATSURL           string
	WSAddr            string
	APIKey            string
	APISecret         string
	APISecretPrevious string
	DevTokens         bool
	// NodeName names this node in connection ids and subjects; a node
	// restarting under the same name invalidates its old connections (I6).
	NodeName string
	// HealthTimeout closes a socket that sent nothing for this long. The SDK
	// pings every 25 s once it has received a health.check.
	HealthTimeout time.Duration
	// ActiveInterval is how often a live connection refreshes last_active.
	ActiveInterval time.Duration
	// LeaseInterval is how often the node renews its lease.
	LeaseInterval time.Duration
	// SendQueue is how many events may wait for a slow socket before it is
	// closed (so one slow client never holds up the others).
	SendQueue int
	// MaxWatches bounds the users plus channels one connection may watch.
	MaxWatches int
}

// RegisterFlags binds the config to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	fs.StringVar(&c.WSAddr, "ws-addr", ":8800", "address of the WebSocket listener (/connect)")
	fs.StringVar(&c.APIKey, "api-key", "presence", "API key clients must send")
	fs.StringVar(&c.APISecret, "api-secret", "", "API secret that signs tokens (required)")
	fs.StringVar(&c.APISecretPrevious, "api-secret-previous", "", "previous API secret, still accepted while rotating")
	fs.BoolVar(&c.DevTokens, "dev-tokens", false, "accept unsigned development tokens (never in production)")
	fs.StringVar(&c.NodeName, "node-name", "gateway-1", "unique name of this gateway node")
	fs.DurationVar(&c.HealthTimeout, "health-timeout", 70*time.Second, "close a socket silent for this long")
	fs.DurationVar(&c.ActiveInterval, "active-interval", 15*time.Minute, "how often a live connection refreshes last_active")
	fs.DurationVar(&c.LeaseInterval, "lease-interval", 2*time.Second, "how often the node renews its lease")
	fs.IntVar(&c.SendQueue, "send-queue", 256, "events queued per socket before a slow socket is closed")
	fs.IntVar(&c.MaxWatches, "max-watches", 10000, "users plus channels one connection may watch")
}

func (c *Config) defaults() {
	var d Config
	d.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	if c.WSAddr == "" {
		c.WSAddr = d.WSAddr
	}
	if c.NodeName == "" {
		c.NodeName = d.NodeName
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = d.HealthTimeout
	}
	if c.ActiveInterval <= 0 {
		c.ActiveInterval = d.ActiveInterval
	}
	if c.LeaseInterval <= 0 {
		c.LeaseInterval = d.LeaseInterval
	}
	if c.SendQueue <= 0 {
		c.SendQueue = d.SendQueue
	}
	if c.MaxWatches <= 0 {
		c.MaxWatches = d.MaxWatches
	}
}
