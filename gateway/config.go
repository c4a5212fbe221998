package gateway

import (
	"flag"
	"time"

	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
)

// Config of a gateway node. Every field has a flag and a PRESENCE_* variable
// (see docs/config.md).
type Config struct {
	NATSURL string
	// NATSUser and NATSPassword are the node's NATS credentials (pkg/natsauth).
	NATSUser, NATSPassword string
	WSAddr                 string
	APIKey                 string
	APISecret              string
	APISecretPrevious      string
	DevTokens              bool
	// NodeName names this node in connection ids and subjects; a node
	// restarting under the same name invalidates its old connections (I6).
	NodeName string
	// HealthTimeout closes a socket that sent nothing for this long. The SDK
	// pings every 25 s once it has received a health.check.
	HealthTimeout time.Duration
	// ActiveInterval is how often a live connection refreshes last_active.
	ActiveInterval time.Duration
	// LeaseTTL is how long the node's connections outlive it if it dies
	// without a word: workers expire a lease not renewed for this long (I4).
	LeaseTTL time.Duration
	// LeaseInterval is how often the node renews its lease, well inside TTL.
	LeaseInterval time.Duration
	// PingInterval and PingTimeout find clients that vanished without a
	// close (a laptop lid shut): a socket that does not answer a WebSocket
	// ping within the timeout is closed.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// DrainWindow spreads the closing of sockets on shutdown so their
	// reconnects do not arrive at once; 0 closes them all at once.
	DrainWindow time.Duration
	// DrainGrace is how long the workers wait before a drained connection's
	// user reads offline: a reconnect through another gateway within it
	// produces no offline→online flap.
	DrainGrace time.Duration
	// ConnectRate and ConnectBurst bound accepted connects per second; past
	// them a connect waits (ConnectWait), then gets the SDK's retryable
	// rate-limit error. Each connect brings a worker about two events (its
	// open, later its close): 4,000/s per gateway stays well inside one
	// worker's 20,000+ transitions/s.
	ConnectRate  float64
	ConnectBurst int
	// ConnectRatePerIP and ConnectBurstPerIP bound the connects from one
	// source address (an IPv6 /64), so one address — a script, a client
	// stuck in a reconnect loop — cannot take the node's ConnectRate from
	// everyone else. Past them a connect gets the same retryable rate-limit
	// error at once, without waiting its turn: a flood must not hold
	// sockets. 50/s with bursts of 100 is far more than the people behind
	// one address make (the SDK connects once a session and waits at least
	// 250 ms before a reconnect); when a gateway drains, an office behind
	// one NAT reconnects over DrainWindow, so 600 of its users get in
	// within 10 s and more after the SDK's backoff. One gateway needs 80
	// such addresses flooding at once to lose its ConnectRate to them.
	// 0: no per-address limit (load tests, whose thousands of clients share
	// a loopback address, set it).
	ConnectRatePerIP  float64
	ConnectBurstPerIP int
	// TrustedProxies are the load balancers (addresses or CIDR prefixes,
	// comma separated) whose X-Forwarded-For names the client for
	// ConnectRatePerIP. Empty: the header is never read, since anyone can
	// write it.
	TrustedProxies string
	// ConnectInFlight bounds connects under way at once (each waits on a
	// few JetStream requests); past it a connect gets the same retryable
	// error, so a storm meets back-pressure instead of swamping JetStream.
	ConnectInFlight int
	// ConnectWait is how long a connect past ConnectRate or ConnectInFlight
	// waits for its turn before it is answered with the retryable error: in
	// a reconnect storm a short wait here beats the SDK's backoff of seconds.
	ConnectWait time.Duration
	// SendQueue is how many events may wait for a slow socket before it is
	// closed (so one slow client never holds up the others).
	SendQueue int
	// MaxWatches bounds the users plus channels one connection may watch.
	MaxWatches int
	// Replicas of the JetStream stream and buckets (3 in a cluster).
	Replicas int
	// MaxConnsPerUser bounds one user's open connections across all nodes.
	MaxConnsPerUser int
	// ClientFrameRate and ClientFrameBurst bound the WebSocket frames one
	// client sends (each counts: health checks, anything else, pings,
	// pongs); past them the socket is closed with 1008 (policy violation).
	// The SDK sends a health check 25 s after each it receives, and the
	// gateway's pings bring a pong every PingInterval (5 s): 20/s with
	// bursts of 50 is some eighty times what a client sends, and still cuts
	// off a flood within its first few milliseconds. The SDK reconnects
	// after 1008 (with its backoff), and meets the connect limits.
	ClientFrameRate  float64
	ClientFrameBurst int
}

// RegisterFlags binds the config to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	natsconn.RegisterCredentialFlags(fs, &c.NATSUser, &c.NATSPassword, natsauth.Gateway)
	fs.StringVar(&c.WSAddr, "ws-addr", ":8800", "address of the WebSocket listener (/connect)")
	fs.StringVar(&c.APIKey, "api-key", "presence", "API key clients must send")
	fs.StringVar(&c.APISecret, "api-secret", "", "API secret that signs tokens (required)")
	fs.StringVar(&c.APISecretPrevious, "api-secret-previous", "", "previous API secret, still accepted while rotating")
	fs.BoolVar(&c.DevTokens, "dev-tokens", false, "accept unsigned development tokens (never in production)")
	fs.StringVar(&c.NodeName, "node-name", "gateway-1", "unique name of this gateway node")
	fs.DurationVar(&c.HealthTimeout, "health-timeout", 70*time.Second, "close a socket silent for this long")
	fs.DurationVar(&c.ActiveInterval, "active-interval", 15*time.Minute, "how often a live connection refreshes last_active")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 10*time.Second, "a node silent for this long has its users taken offline")
	fs.DurationVar(&c.LeaseInterval, "lease-interval", time.Second, "how often the node renews its lease (at most a tenth of the TTL)")
	fs.DurationVar(&c.PingInterval, "ping-interval", 5*time.Second, "how often each socket is pinged")
	fs.DurationVar(&c.PingTimeout, "ping-timeout", 10*time.Second, "close a socket whose ping is not answered within this")
	fs.DurationVar(&c.DrainWindow, "drain-window", 10*time.Second, "on shutdown, close sockets spread over this window (0: all at once)")
	fs.DurationVar(&c.DrainGrace, "drain-grace", 10*time.Second, "a drained user reconnecting elsewhere within this never reads offline")
	fs.Float64Var(&c.ConnectRate, "connect-rate", 4000, "connects accepted per second before answering rate-limited")
	fs.IntVar(&c.ConnectBurst, "connect-burst", 4000, "connects accepted at once before the rate applies")
	fs.Float64Var(&c.ConnectRatePerIP, "connect-rate-per-ip", 50, "connects accepted per second from one source address (an IPv6 /64) before answering rate-limited; 0: no per-address limit")
	fs.IntVar(&c.ConnectBurstPerIP, "connect-burst-per-ip", 100, "connects accepted at once from one source address before connect-rate-per-ip applies")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "load balancers (addresses or CIDR prefixes, comma separated) whose X-Forwarded-For names the client for connect-rate-per-ip; empty: X-Forwarded-For is never read")
	fs.IntVar(&c.ConnectInFlight, "connect-inflight", 1024, "connects under way at once (waiting on JetStream) before answering rate-limited")
	fs.DurationVar(&c.ConnectWait, "connect-wait", 3*time.Second, "how long a connect past connect-rate or connect-inflight waits for its turn before answering rate-limited")
	fs.IntVar(&c.SendQueue, "send-queue", 256, "events queued per socket before a slow socket is closed")
	fs.IntVar(&c.MaxWatches, "max-watches", 10000, "users plus channels one connection may watch")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of JetStream streams and buckets (3 in a cluster)")
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", 50, "open connections one user may hold across all gateways")
	fs.Float64Var(&c.ClientFrameRate, "client-frame-rate", 20, "WebSocket frames one client may send per second, sustained, before its socket is closed with 1008")
	fs.IntVar(&c.ClientFrameBurst, "client-frame-burst", 50, "WebSocket frames one client may send at once before client-frame-rate applies")
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
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = d.LeaseTTL
	}
	if c.LeaseInterval <= 0 {
		c.LeaseInterval = d.LeaseInterval
	}
	// Workers expire a lease silent for 80% of its TTL: renewals must come
	// far more often than that.
	c.LeaseInterval = min(c.LeaseInterval, c.LeaseTTL/10)
	if c.PingInterval <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = d.PingTimeout
	}
	if c.DrainGrace <= 0 {
		c.DrainGrace = d.DrainGrace
	}
	if c.ConnectRate <= 0 {
		c.ConnectRate = d.ConnectRate
	}
	if c.ConnectBurst <= 0 {
		c.ConnectBurst = d.ConnectBurst
	}
	if c.ConnectRatePerIP > 0 && c.ConnectBurstPerIP <= 0 {
		c.ConnectBurstPerIP = d.ConnectBurstPerIP
	}
	if c.ConnectInFlight <= 0 {
		c.ConnectInFlight = d.ConnectInFlight
	}
	if c.ConnectWait <= 0 {
		c.ConnectWait = d.ConnectWait
	}
	if c.SendQueue <= 0 {
		c.SendQueue = d.SendQueue
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = d.MaxConnsPerUser
	}
	if c.MaxWatches <= 0 {
		c.MaxWatches = d.MaxWatches
	}
	if c.ClientFrameRate <= 0 {
		c.ClientFrameRate = d.ClientFrameRate
	}
	if c.ClientFrameBurst <= 0 {
		c.ClientFrameBurst = d.ClientFrameBurst
	}
}
