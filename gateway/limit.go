package gateway

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/presencehq/presence/pkg/ratelimit"
)

// rateLimit bounds the node's connects per second, so a reconnect storm is
// answered with retryable errors instead of overwhelming the node.
type rateLimit struct {
	mu          sync.Mutex
	rate, burst float64
	bucket      ratelimit.Bucket
	now         func() time.Time
}

func newRateLimit(rate float64, burst int) *rateLimit {
	return &rateLimit{rate: rate, burst: float64(burst), now: time.Now}
}

// reserve takes the next token if it comes within maxWait, and says how long
// to wait for it; waiters are served at the rate, in turn.
func (r *rateLimit) reserve(maxWait time.Duration) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bucket.Reserve(r.now(), r.rate, r.burst, maxWait)
}

// maxTrackedAddrs bounds the source addresses an addrLimit tracks at once
// (about 80 bytes each): past it a new address is not limited on its own,
// and the node's ConnectRate is what bounds a flood from that many.
const maxTrackedAddrs = 100_000

// addrLimit gives each source address a token bucket of its own, so one
// address cannot take the node's whole connect rate from everyone else.
//
// Its memory is bounded: buckets live in two generations that turn every
// refill period (how long an emptied bucket takes to fill). A bucket
// untouched for a whole period is full again, the same as a new one, so
// the generation dropped at a turn forgets nothing that mattered; and at
// most max addresses are tracked.
type addrLimit struct {
	mu          sync.Mutex
	rate, burst float64
	max         int
	period      time.Duration
	cur, prev   map[netip.Addr]ratelimit.Bucket
	turned      time.Time // when cur began
	now         func() time.Time
}

func newAddrLimit(rate float64, burst int) *addrLimit {
	// At least a second, so a turn is not a cost paid per connect; at most
	// an hour for very slow rates, where forgetting a bucket early gives an
	// address a new burst an hour on.
	secs := min(max(float64(burst)/rate, 1), 3600)
	period := time.Duration(secs * float64(time.Second))
	return &addrLimit{
		rate: rate, burst: float64(burst), max: maxTrackedAddrs, period: period,
		cur: map[netip.Addr]ratelimit.Bucket{}, now: time.Now,
	}
}

// allow takes a token from a's bucket, and reports whether there was one.
func (l *addrLimit) allow(a netip.Addr) bool {
	a = addrKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.turned.IsZero() {
		l.turned = now
	}
	if idle := now.Sub(l.turned); idle >= l.period {
		l.prev, l.cur, l.turned = l.cur, map[netip.Addr]ratelimit.Bucket{}, now
		if idle >= 2*l.period {
			l.prev = nil // cur was idle a whole period too
		}
	}
	b, ok := l.cur[a]
	if !ok {
		if b, ok = l.prev[a]; ok {
			delete(l.prev, a)
		} else if len(l.cur)+len(l.prev) >= l.max {
			return true
		}
	}
	allowed := b.Allow(now, l.rate, l.burst)
	l.cur[a] = b
	return allowed
}

// tracked is the number of addresses with a bucket.
func (l *addrLimit) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cur) + len(l.prev)
}

// addrKey is the source a bucket belongs to: an IPv4 address, or an IPv6
// /64 (one host, or one home, is given a whole /64 and can pick any address
// in it).
func addrKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// clientAddr is where a connect comes from: the peer's address or, when the
// peer is a trusted proxy, the nearest address in X-Forwarded-For that is
// not one. Each proxy appends the address it was reached from, so reading
// from the right, entries are believable only up to the first one no
// trusted proxy wrote. False when the peer's address cannot be read.
func clientAddr(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap()
	if !isTrusted(a, trusted) {
		return a, true
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // not an address: believe nothing left of it
		}
		if a = h.Unmap(); !isTrusted(a, trusted) {
			break
		}
	}
	return a, true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseProxies reads a comma-separated list of addresses and CIDR prefixes.
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
