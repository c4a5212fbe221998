package worker

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/subject"
)

// leases tracks when this worker last saw each gateway's lease renewed, on
// its own clock: expiry never depends on clocks agreeing across machines.
type leases struct {
	mu    sync.Mutex
	nodes map[string]*leaseSeen
	now   func() time.Time
}

type leaseSeen struct {
	lease model.Lease
	rev   uint64
	at    time.Time // when this worker saw the renewal
}

func newLeases() *leases { return &leases{nodes: map[string]*leaseSeen{}, now: time.Now} }

func (l *leases) seen(node string, lease model.Lease, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[node] = &leaseSeen{lease: lease, rev: rev, at: l.now()}
}

// heard notes a heartbeat of node's epoch as a renewal of its lease.
func (l *leases) heard(node string, epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.nodes[node]; s != nil && s.lease.Epoch == epoch && !s.lease.Expired {
		s.at = l.now()
	}
}

// followHeartbeats notes the gateways' heartbeats (core NATS): a live node
// whose lease renewals an overloaded JetStream holds up is not expired.
func (w *Worker) followHeartbeats() error {
	sub, err := w.leaseNC.Subscribe(subject.GatewayAliveAll, func(m *nats.Msg) {
		node, ok := subject.ParseGatewayAlive(m.Subject)
		epoch, err := strconv.ParseUint(string(m.Data), 10, 64)
		if ok && err == nil {
			w.leases.heard(node, epoch)
		}
	})
	if err != nil {
		return err
	}
	w.heartbeats = sub
	w.wg.Go(func() {
		<-w.ctx.Done()
		_ = sub.Unsubscribe()
	})
	return nil
}

// silenceAllowed is how long a lease may go unrenewed before it is
// expired: 80% of its TTL. The node may have died just after its last
// renewal, and the check and the sweep take time too, so waiting the whole
// TTL would take its users offline only after the TTL has passed, not
// within it (I4). A live gateway renews every TTL/10, so it would have to
// miss eight renewals in a row.
func silenceAllowed(ttl time.Duration) time.Duration { return ttl * 8 / 10 }

// lapsed returns the leases not renewed in time and not yet expired.
func (l *leases) lapsed() map[string]leaseSeen {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]leaseSeen{}
	now := l.now()
	for node, s := range l.nodes {
		if !s.lease.Expired && s.lease.TTL > 0 && now.Sub(s.at) > silenceAllowed(s.lease.TTL) {
			out[node] = *s
		}
	}
	return out
}

// expireLeases marks lapsed leases expired. The mark is a compare-and-set on
// the lease's revision: if the gateway renewed meanwhile, the mark fails and
// the node lives on; among workers, one wins.
func (w *Worker) expireLeases() {
	defer w.wg.Done()
	t := time.NewTicker(w.cfg.LeaseCheck)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		if n, _, err := w.heartbeats.Pending(); err == nil && n > 0 {
			continue // heartbeats not yet noted: this process is behind, not the nodes
		}
		for node, s := range w.leases.lapsed() {
			l := s.lease
			l.Expired = true
			b, _ := json.Marshal(l)
			ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
			_, err := w.nodes.Update(ctx, node, b, s.rev)
			cancel()
			if err == nil {
				w.log.Warn("gateway lease expired: taking its users offline", "node", node, "epoch", l.Epoch, "silent_for", time.Since(s.lease.RenewedAt).Round(time.Millisecond))
			}
			// On failure the watch brings the newer record (renewal or
			// another worker's mark) and the next round decides again.
		}
	}
}

// announceExpiry puts a node's expiry on the input stream, where exactly one
// worker sweeps it (redelivered if that worker dies). Every worker that sees
// the mark announces it; JetStream keeps one copy.
func (w *Worker) announceExpiry(node string, l model.Lease) {
	if time.Since(l.RenewedAt) > 10*l.TTL+time.Minute {
		return // an old mark replayed at start: swept long ago
	}
	ev := connevent.Event{Kind: connevent.NodeExpired, Node: node, Epoch: l.Epoch + 1, At: time.Now().UTC()}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		defer cancel()
		if _, err := w.js.Publish(ctx, subject.NodeEvent(node), ev.Encode(), jetstream.WithMsgID(ev.MsgID())); err != nil && w.ctx.Err() == nil {
			w.log.Error("announce lease expiry", "node", node, "err", err)
		}
	}()
}
