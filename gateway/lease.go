package gateway

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/subject"
)

// Lease is a gateway node's lease record in the nodes bucket.
type Lease struct {
	Epoch     uint64    `json:"epoch"`
	RenewedAt time.Time `json:"renewed_at"`
}

// announce tells the workers this node runs under a new epoch, so every
// connection of its previous run is dropped at once (I6), and takes the lease.
func (g *Gateway) announce(ctx context.Context) error {
	ev := connevent.Event{Kind: connevent.NodeStarted, Node: g.cfg.NodeName, Epoch: g.epoch, At: time.Now().UTC()}
	if _, err := g.js.Publish(ctx, subject.NodeStarted(g.cfg.NodeName), ev.Encode(), jetstream.WithMsgID(ev.MsgID())); err != nil {
		return err
	}
	return g.putLease(ctx)
}

func (g *Gateway) putLease(ctx context.Context) error {
	b, _ := json.Marshal(Lease{Epoch: g.epoch, RenewedAt: time.Now().UTC()})
	_, err := g.st.Nodes.Put(ctx, g.cfg.NodeName, b)
	return err
}

// renewLease keeps the node's lease alive while it runs.
func (g *Gateway) renewLease() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.LeaseInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(g.ctx, g.cfg.LeaseInterval)
			if err := g.putLease(ctx); err != nil && g.ctx.Err() == nil {
				g.log.Warn("renew lease", "err", err)
			}
			cancel()
		}
	}
}

// activeSlots spreads the last_active refreshes of the node's connections
// over the interval instead of sending them all at once.
const activeSlots = 16

// refreshActive publishes an "active" event for every connection once per
// ActiveInterval, so last_active stays fresh while users stay connected.
func (g *Gateway) refreshActive() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.ActiveInterval / activeSlots)
	defer t.Stop()
	for slot := uint64(0); ; slot++ {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		var due []*conn
		for _, c := range g.conns {
			if c.seq%activeSlots == slot%activeSlots {
				due = append(due, c)
			}
		}
		g.mu.Unlock()
		now := time.Now().UTC()
		for _, c := range due {
			ev := connevent.Event{Kind: connevent.Active, User: c.user, ConnID: c.id, Node: g.cfg.NodeName, Epoch: g.epoch, At: now}
			// Fire and forget: a lost refresh only makes last_active a bit older.
			_, _ = g.js.PublishAsync(subject.ConnEvent(g.cfg.NodeName, c.user), ev.Encode(), jetstream.WithMsgID(ev.MsgID()))
		}
	}
}
