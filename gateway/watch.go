package gateway

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/watch"
)

// maxWatchBatch bounds one watch request.
const maxWatchBatch = 1000

// serveWatchRequests answers api nodes asking to add or remove watches of one
// of this node's connections.
func (g *Gateway) serveWatchRequests() error {
	sub, err := g.nc.Subscribe(subject.GatewayWatch(g.cfg.NodeName), g.handleWatch)
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

func (g *Gateway) handleWatch(msg *nats.Msg) {
	reply := func(r watch.Reply) {
		b, _ := json.Marshal(r)
		_ = msg.Respond(b)
	}
	var req watch.Request
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		reply(watch.Reply{Error: "bad watch request"})
		return
	}
	if len(req.Users)+len(req.CIDs) > maxWatchBatch {
		reply(watch.Reply{Error: "too many watches in one request"})
		return
	}
	if errMsg := checkTargets(req.Users, req.CIDs); errMsg != "" {
		reply(watch.Reply{Error: errMsg})
		return
	}
	g.mu.Lock()
	c := g.conns[req.ConnID]
	g.mu.Unlock()
	// A connection id is not a secret: only its own user may add watches to it.
	if c == nil || c.user != req.UserID {
		reply(watch.Reply{NotFound: true})
		return
	}
	if req.Remove {
		g.relay.unwatch(c, req.Users, req.CIDs)
	} else if !g.relay.watch(c, req.Users, req.CIDs, g.cfg.MaxWatches) {
		reply(watch.Reply{Error: "connection watches too many users and channels"})
		return
	}
	reply(watch.Reply{})
}

func checkTargets(users, cids []string) string {
	for _, u := range users {
		if err := subject.CheckUserID(u); err != nil {
			return err.Error()
		}
	}
	for _, cid := range cids {
		typ, id, ok := strings.Cut(cid, ":")
		if !ok {
			return "cid must be type:id"
		}
		if err := subject.CheckChannelType(typ); err != nil {
			return err.Error()
		}
		if err := subject.CheckChannelID(id); err != nil {
			return err.Error()
		}
	}
	return ""
}
