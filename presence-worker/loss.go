package worker

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

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
	e, err := w.st.Presence.Get(ctx, store.SentinelKey)
	switch {
	case err == nil:
		if rest, ok := strings.CutPrefix(string(e.Value()), "rebuilt:"); ok {
			if at, perr := time.Parse(time.RFC3339Nano, rest); perr == nil {
				w.rebuiltAt.Store(at.UnixNano())
			}
		}
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
	now := time.Now().UTC()
	if _, err := w.st.Presence.Create(ctx, store.SentinelKey, []byte("rebuilt:"+now.Format(time.RFC3339Nano))); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // another worker got there first and asks the gateways
		}
		return err
	}
	w.rebuiltAt.Store(now.UnixNano())
	w.log.Warn("presence state was lost: asking every gateway to re-announce its connections")
	return w.nc.Publish(subject.Reannounce, nil)
}

// rebuildWindow is how long after the presence state was (re)created a
// user's first state write tells watchers the user's state even if it is
// no transition: watchers may still believe what the lost state said (a
// user who left during the loss would otherwise stay online for them).
const rebuildWindow = 2 * time.Minute

// rebuilding reports whether the presence state was recreated recently.
func (w *Worker) rebuilding() bool {
	at := w.rebuiltAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < rebuildWindow
}
