package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// newEpoch picks an epoch above every earlier one of this node name, even if
// the clock went backwards since.
func (g *Gateway) newEpoch(ctx context.Context) (uint64, error) {
	epoch := uint64(time.Now().UnixNano())
	e, err := g.leases.Get(ctx, g.cfg.NodeName)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return epoch, nil
	}
	if err != nil {
		return 0, err
	}
	var l model.Lease
	if json.Unmarshal(e.Value(), &l) == nil && l.Epoch+2 > epoch {
		epoch = l.Epoch + 2 // +1 may be the mark of its expiry
	}
	return epoch, nil
}

// announce tells the workers this node runs under a new epoch, so every
// connection of its previous runs is dropped at once (I6), and takes the lease.
func (g *Gateway) announce(ctx context.Context) error {
	epoch, err := g.newEpoch(ctx)
	if err != nil {
		return err
	}
	g.epoch.Store(epoch)
	ev := connevent.Event{Kind: connevent.NodeStarted, Node: g.cfg.NodeName, Epoch: epoch, At: time.Now().UTC()}
	if _, err := g.js.Publish(ctx, subject.NodeEvent(g.cfg.NodeName), ev.Encode(), jetstream.WithMsgID(ev.MsgID())); err != nil {
		return err
	}
	b, _ := json.Marshal(model.Lease{Epoch: epoch, RenewedAt: time.Now().UTC(), TTL: g.cfg.LeaseTTL})
	rev, err := g.leases.Put(ctx, g.cfg.NodeName, b)
	g.leaseRev.Store(rev)
	return err
}

// errLeaseLost: a worker expired this node's lease, or another process took
// the node name.
var errLeaseLost = errors.New("lease lost")

// renew renews the lease for its TTL.
func (g *Gateway) renew(ctx context.Context) error { return g.writeLease(ctx, g.cfg.LeaseTTL) }

// writeLease writes the lease with compare-and-set on the revision it last
// wrote, so a worker's expiry mark is never overwritten unseen: one request
// as a rule; when the record moved (a mark, another process under the
// name, or a renewal whose answer was lost), it reads the record to tell.
func (g *Gateway) writeLease(ctx context.Context, ttl time.Duration) error {
	epoch := g.epoch.Load()
	b, _ := json.Marshal(model.Lease{Epoch: epoch, RenewedAt: time.Now().UTC(), TTL: ttl})
	rev, err := g.leases.Update(ctx, g.cfg.NodeName, b, g.leaseRev.Load())
	if err == nil {
		g.leaseRev.Store(rev)
		return nil
	}
	if !store.IsConflict(err) {
		return err
	}
	e, err := g.leases.Get(ctx, g.cfg.NodeName)
	if err != nil {
		return err
	}
	var l model.Lease
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return err
	}
	if l.Epoch != epoch || l.Expired {
		return errLeaseLost
	}
	rev, err = g.leases.Update(ctx, g.cfg.NodeName, b, e.Revision())
	if err == nil {
		g.leaseRev.Store(rev)
	}
	return err
}

// keepLease keeps the node alive in the workers' eyes every LeaseInterval,
// on its own goroutine and NATS connection, so a busy relay never delays
// it: a heartbeat (core NATS, which an overloaded JetStream cannot hold up)
// and a renewal of the lease record, which may take up to half the TTL
// when JetStream is slow; a renewal still under way is not started again.
// If the lease was lost (the node was cut off longer than the TTL and the
// workers took its users offline), every socket is closed so its clients
// reconnect, and the node carries on under a new epoch.
func (g *Gateway) keepLease() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.LeaseInterval)
	defer t.Stop()
	renewed := make(chan error, 1)
	renewing := false
	for {
		select {
		case <-g.ctx.Done():
			if renewing {
				<-renewed
			}
			return
		case err := <-renewed:
			renewing = false
			g.metrics.renewed(err)
			if errors.Is(err, errLeaseLost) {
				g.recoverLease()
			} else if err != nil && g.ctx.Err() == nil {
				g.log.Warn("renew lease", "err", err)
			}
			continue
		case <-t.C:
		}
		g.heartbeat()
		if !renewing {
			renewing = true
			go func() {
				ctx, cancel := context.WithTimeout(g.ctx, max(g.cfg.LeaseInterval, g.cfg.LeaseTTL/2))
				defer cancel()
				renewed <- g.renew(ctx)
			}()
		}
	}
}

// heartbeat tells the workers this node and epoch are alive.
func (g *Gateway) heartbeat() {
	if err := g.leaseNC.Publish(subject.GatewayAlive(g.cfg.NodeName), strconv.AppendUint(nil, g.epoch.Load(), 10)); err != nil && g.ctx.Err() == nil {
		g.log.Warn("lease heartbeat", "err", err)
	}
}

// retireLease renews the lease one last time on a graceful stop, for as
// long as the drained users' grace runs: the workers must not sweep those
// connections before a reconnect elsewhere has had its chance.
func (g *Gateway) retireLease() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.writeLease(ctx, g.cfg.DrainGrace+g.cfg.LeaseTTL); err != nil {
		g.log.Warn("retire lease", "err", err)
	}
}

// recoverLease starts a new epoch after the workers expired the node, then
// closes every socket of the old one (their users already read offline; the
// SDK reconnects). A connect racing this is refused at registration, where
// its epoch no longer matches.
func (g *Gateway) recoverLease() {
	g.log.Error("lease lost: starting a new epoch and closing every socket of the old one")
	old := g.epoch.Load()
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	if err := g.announce(ctx); err != nil {
		if g.ctx.Err() == nil {
			g.log.Error("re-announce after lost lease; will retry", "err", err)
		}
		return // the next renewal finds the lease still lost and tries again
	}
	g.mu.Lock()
	var stale []*conn
	for _, c := range g.conns {
		if c.epoch == old {
			stale = append(stale, c)
		}
	}
	g.mu.Unlock()
	for _, c := range stale {
		go c.close(websocket1012, "lease lost, reconnect")
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
		g.announceActive(func(c *conn) bool { return c.seq%activeSlots == slot%activeSlots })
	}
}

// announceActive publishes "active" for the connections due. For a
// connection the workers no longer know (the presence state was lost), it
// restores it.
func (g *Gateway) announceActive(due func(*conn) bool) int {
	g.mu.Lock()
	var list []*conn
	for _, c := range g.conns {
		if due(c) {
			list = append(list, c)
		}
	}
	g.mu.Unlock()
	now := time.Now().UTC()
	for _, c := range list {
		ev := connevent.Event{Kind: connevent.Active, User: c.user, ConnID: c.id, Node: g.cfg.NodeName, Epoch: c.epoch, At: now}
		// Fire and forget: a lost refresh only makes last_active a bit older.
		_, _ = g.js.PublishAsync(subject.ConnEvent(g.cfg.NodeName, c.user), ev.Encode(), jetstream.WithMsgID(ev.MsgID()))
	}
	return len(list)
}

// serveReannounce answers a worker that found the presence state lost by
// announcing every live connection at once.
func (g *Gateway) serveReannounce() error {
	sub, err := g.nc.Subscribe(subject.Reannounce, func(*nats.Msg) {
		n := g.announceActive(func(*conn) bool { return true })
		g.log.Warn("presence state was lost: re-announced live connections", "connections", n)
	})
	if err != nil {
		return err
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		<-g.ctx.Done()
		_ = sub.Unsubscribe()
	}()
	return nil
}
