package gateway

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/resync"
)

// resyncAgain is when a reconnected node asks a second time: its renewed
// subscriptions reach the other NATS servers a moment after it reconnects,
// and events published before that pass it by.
const resyncAgain = 2 * time.Second

// resyncAfterReconnect asks the workers, whenever the node's NATS
// connection comes back, to publish again the current events of every user
// and channel it watches: events sent while it was away are lost to it
// (they are core NATS messages), and its watchers would keep an old state.
func (g *Gateway) resyncAfterReconnect() {
	status := g.nc.StatusChanged(nats.CONNECTED)
	g.wg.Go(func() {
		defer g.nc.RemoveStatusListener(status)
		var again <-chan time.Time
		for {
			select {
			case <-g.ctx.Done():
				return
			case <-status:
				g.resync()
				again = time.After(resyncAgain)
			case <-again:
				g.resync()
			}
		}
	})
}

func (g *Gateway) resync() {
	users, cids := g.relay.watched()
	if err := resync.Send(g.nc, users, cids); err != nil {
		g.log.Warn("resync after reconnect", "err", err)
		return
	}
	g.log.Info("NATS reconnected: asked for the current state of what this node watches", "users", len(users), "channels", len(cids))
}
