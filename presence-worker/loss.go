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
		if err := w.checkSentinel(ctx, true); err != nil && w.ctx.Err() == nil {
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

// recreateAfter is how long a deleted presence bucket must have been seen
// gone before a worker creates it again.
const recreateAfter = time.Second

// errBucketGone is a presence bucket found deleted where it is not
// recreated: the event waits for the periodic check to recreate it.
var errBucketGone = errors.New("the presence bucket is gone")

// checkSentinel finds a lost state from its missing sentinel, puts the
// sentinel back and asks the gateways to re-announce. A deleted bucket is
// recreated only if recreate is set: only the periodic check does it, since
// creations racing the deletion can leave the cluster with a bucket that
// some servers do not know.
//
// The sentinel is read from the stream's leader: a direct get may be
// answered by a replica that has not yet applied a purge, and its stale
// "genesis" would make a close found after the loss look like a user's
// first, telling no watcher (the user would stay online for them).
func (w *Worker) checkSentinel(ctx context.Context, recreate bool) error {
	v, err := store.GetFromLeader(ctx, w.js, store.BucketPresence, store.SentinelKey)
	if recreate && (err == nil || errors.Is(err, jetstream.ErrKeyNotFound)) {
		w.goneSince = time.Time{} // there, or back
	}
	switch {
	case err == nil:
		w.learnRebuild(v)
		return nil
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, nats.ErrNoResponders): // a direct get on a deleted bucket
		if !recreate {
			return errBucketGone
		}
		// Let the deletion reach every server first: writes got "no
		// response from stream" half a second after it, and a creation
		// racing it risks a bucket some servers do not know.
		if w.goneSince.IsZero() {
			w.goneSince = time.Now()
		}
		if time.Since(w.goneSince) < recreateAfter {
			return errBucketGone
		}
		w.goneSince = time.Time{}
		w.log.Error("the presence bucket is gone: recreating it and rebuilding from the gateways")
		w.states.Reset() // a new bucket's revisions start again: no guess holds
		if err := store.RecreatePresence(ctx, w.js, store.Options{Replicas: w.cfg.Replicas}); err != nil {
			return err
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return err
	}
	now := time.Now().UTC()
	if _, err := w.st.Presence.Create(ctx, store.SentinelKey, []byte("rebuilt:"+now.Format(time.RFC3339Nano))); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Another worker got there first and asks the gateways; its
			// rebuild time counts here too.
			if v, err := store.GetFromLeader(ctx, w.js, store.BucketPresence, store.SentinelKey); err == nil {
				w.learnRebuild(v)
			}
			return nil
		}
		return err
	}
	w.rebuiltAt.Store(now.UnixNano())
	w.states.Reset()
	w.log.Warn("presence state was lost: asking every gateway to re-announce its connections")
	return w.nc.Publish(subject.Reannounce, nil)
}

// learnRebuild notes when the state was rebuilt, from the sentinel's value.
func (w *Worker) learnRebuild(sentinel []byte) {
	if rest, ok := strings.CutPrefix(string(sentinel), "rebuilt:"); ok {
		if at, err := time.Parse(time.RFC3339Nano, rest); err == nil && w.rebuiltAt.Swap(at.UnixNano()) != at.UnixNano() {
			// Rebuilt since the last look, perhaps in a bucket created
			// anew: no remembered state or revision holds any more.
			w.states.Reset()
		}
	}
}

// rebuildWindow is how long after the presence state was (re)created a
// user's first state write tells watchers the user's state even if it is
// no transition: watchers may still believe what the lost state said (a
// user who left during the loss would otherwise stay online for them).
const rebuildWindow = 2 * time.Minute

// stateLost reports whether a user's state may be missing because the
// presence state was lost, not because the user has none yet. Asked when an
// event finds no state and makes no transition (a close, an invisible
// connect): the periodic check may not have noticed a loss yet, so the
// sentinel is checked now, at one read for such rare events.
func (w *Worker) stateLost(ctx context.Context) (bool, error) {
	if w.rebuilding() {
		return true, nil
	}
	if err := w.checkSentinel(ctx, false); err != nil {
		return false, err
	}
	return w.rebuilding(), nil
}

// rebuilding reports whether the presence state was recreated recently.
func (w *Worker) rebuilding() bool {
	at := w.rebuiltAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < rebuildWindow
}
