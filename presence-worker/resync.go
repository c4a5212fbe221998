package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/resync"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// Events are core NATS messages: those in flight when this worker's NATS
// server dies are lost. The worker remembers whom it emitted for recently
// and, once reconnected, publishes their current events again; gateways
// that reconnect ask for what they watch (subject.Resync). Gateways drop
// the copies they already have.

// recentFor is how long an emitted user is remembered: longer than any
// publication stays in flight.
const recentFor = 10 * time.Second

// resyncParallel is how many users one resync re-emits at once.
const resyncParallel = 16

// recentEmits remembers the users this worker emitted for lately.
type recentEmits struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (r *recentEmits) note(user string) {
	r.mu.Lock()
	r.at[user] = time.Now()
	r.mu.Unlock()
}

// prune forgets users emitted before cutoff.
func (r *recentEmits) prune(cutoff time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for u, t := range r.at {
		if t.Before(cutoff) {
			delete(r.at, u)
		}
	}
}

func (r *recentEmits) users() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.at))
	for u := range r.at {
		out = append(out, u)
	}
	return out
}

// serveResync answers gateways' resync requests (one worker each, by queue
// group) and re-emits this worker's recent users after a reconnect.
func (w *Worker) serveResync() error {
	sub, err := w.nc.QueueSubscribe(subject.Resync, "presence-workers", func(msg *nats.Msg) {
		if w.ctx.Err() != nil {
			return
		}
		req, err := resync.Decode(msg.Data)
		if err != nil {
			w.log.Warn("dropping a bad resync request", "err", err)
			return
		}
		w.wg.Go(func() { w.resync(req.Users, req.CIDs) })
	})
	if err != nil {
		return err
	}
	status := w.nc.StatusChanged(nats.CONNECTED)
	w.wg.Go(func() {
		defer w.nc.RemoveStatusListener(status)
		defer func() { _ = sub.Unsubscribe() }()
		t := time.NewTicker(recentFor / 2)
		defer t.Stop()
		for {
			select {
			case <-w.ctx.Done():
				return
			case <-status:
				// Reconnected: what was published just before the old
				// server died may be lost.
				users := w.recent.users()
				w.log.Info("NATS reconnected: publishing recent events again", "users", len(users))
				w.resync(users, nil)
			case <-t.C:
				if w.nc.IsConnected() {
					w.recent.prune(time.Now().Add(-recentFor))
				}
			}
		}
	})
	return nil
}

// resync publishes the current event of users and of cids' members again.
func (w *Worker) resync(users, cids []string) {
	for _, cid := range cids {
		typ, id, err := subject.ParseCID(cid)
		if err != nil {
			continue
		}
		members, err := w.members(typ, id)
		if err != nil {
			if w.ctx.Err() == nil {
				w.log.Warn("resync: listing a channel's members", "cid", cid, "err", err)
			}
			continue
		}
		users = append(users, members...)
	}
	slots := make(chan struct{}, resyncParallel)
	var wg sync.WaitGroup
	for _, u := range users {
		if w.ctx.Err() != nil {
			break
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
			defer cancel()
			p, _, err := store.Get[model.Presence](ctx, w.st.Presence, store.Key(u))
			if err == nil && p.Version > 0 {
				err = w.emit(ctx, u, p, nil)
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) && w.ctx.Err() == nil {
				w.log.Warn("resync: re-emitting", "user", u, "err", err)
			}
		})
	}
	wg.Wait()
}

// members lists the members of channel typ:id: the keys under it in the
// members bucket (a deleted channel has none).
func (w *Worker) members(typ, id string) ([]string, error) {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	keys, err := w.st.Members.ListKeysFiltered(ctx, store.MembersOf(typ, id))
	if err != nil {
		return nil, err
	}
	defer func() { _ = keys.Stop() }()
	var out []string
	for k := range keys.Keys() {
		if _, u, ok := store.MemberOf(k); ok {
			out = append(out, u)
		}
	}
	return out, ctx.Err()
}
