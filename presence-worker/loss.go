package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// sentinelKey marks the presence bucket as intact. User keys never hold a
// '.', so it cannot collide with a user.
const sentinelKey = "presence.sentinel"

// watchForLoss finds a lost presence state: JetStream can lose acknowledged
// writes in some faults, and an operator can delete or purge the bucket.
// Whichever worker puts the sentinel back (one wins the create) asks every
// gateway to re-announce its live connections, and the state is rebuilt
// from them: no user stays stuck online or offline.
func (w *Worker) watchForLoss() {
	defer w.wg.Done()
	t := time.NewTicker(w.cfg.LeaseCheck)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		if err := w.checkSentinel(ctx); err != nil && w.ctx.Err() == nil {
			w.log.Warn("checking the presence bucket", "err", err)
		}
		cancel()
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) checkSentinel(ctx context.Context) error {
	_, err := w.st.Presence.Get(ctx, sentinelKey)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, nats.ErrNoResponders): // a direct get on a deleted bucket
		w.log.Error("the presence bucket is gone: recreating it and rebuilding from the gateways")
		if _, err := store.Setup(ctx, w.js, store.Options{Replicas: w.cfg.Replicas, ActiveInterval: w.cfg.ActiveInterval}); err != nil {
			return err
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return err
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	if _, err := w.st.Presence.Create(ctx, sentinelKey, []byte(hex.EncodeToString(token))); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // another worker got there first and asks the gateways
		}
		return err
	}
	w.log.Warn("presence state missing or new: asking every gateway to re-announce its connections")
	return w.nc.Publish(subject.Reannounce, nil)
}
