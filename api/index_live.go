package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/presencehq/presence/pkg/apierror"
)

// A bucket can be deleted and recreated under a running node: the presence
// workers do so when the presence state is lost (presence-worker/loss.go),
// and an operator may. The watch does not follow: nats.go recreates its
// ordered consumer on the new stream from the old sequence, which the new
// stream may not have reached, or gives up while the stream is missing and
// ends the watch. Either way the index would keep the old bucket's entries.
//
// So the index is rebuilt while running, the whole file, as at start
// (rebuild: staged watches, then a bulk load). What tells it to:
//
//   - the per-query stream info request (lastRev) that sync makes anyway: the
//     stream's creation time is not the one the index follows, or its last
//     sequence is below the revision the index had applied before the
//     request (a stream's sequence never goes back), or the bucket is gone;
//   - a watch that ends on its own (follow).
//
// Each piece of evidence names the generation it is about (gen, bumped when
// a rebuild starts over the file), so evidence about a stream an earlier
// rebuild already left behind is ignored. While the new stream does not exist
// yet, the old file stays and only the queries on the missing bucket wait;
// once the rebuild empties the file every query waits (sync, and view, which
// checks in its own transaction that the file is built) for up to
// rebuildWait, then gets errRebuilding, a 503 to retry.

// rebuildWait bounds how long a query waits for a rebuild.
const rebuildWait = 3 * time.Second

// rebuildTimeout bounds one attempt of a rebuild while running.
const rebuildTimeout = time.Minute

// rebuildRetryMax is the longest pause between attempts; a missing bucket is
// looked for at least this often.
const rebuildRetryMax = 500 * time.Millisecond

func errRebuilding() error {
	return apierror.New(apierror.CodeInternal, http.StatusServiceUnavailable,
		"the index is being rebuilt after a bucket was recreated, please try again")
}

// requestRebuild starts a rebuild because of evidence about generation gen
// that bucket's stream is not the one the index follows.
func (ix *index) requestRebuild(gen uint64, bucket, why string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.closed || gen != ix.gen {
		return // a rebuild since has left that stream behind
	}
	if ix.rebuilding != nil {
		if !ix.stale[bucket] {
			ix.stale[bucket] = true
			ix.broadcastLocked()
		}
		if ix.resetting {
			// The rebuild under way follows that stream: its attempt
			// fails and starts over.
			ix.again = true
		}
		return
	}
	ix.rebuilding = make(chan struct{})
	ix.stale[bucket] = true
	ix.rebuilds++
	ix.broadcastLocked()
	ix.wg.Add(1)
	go ix.rebuildLive(why)
}

// broadcastLocked wakes every waitFor.
func (ix *index) broadcastLocked() {
	close(ix.changed)
	ix.changed = make(chan struct{})
}

// waitsLocked says a query reading bucket waits for the pending rebuild.
func (ix *index) waitsLocked(bucket string) bool {
	return ix.rebuilding != nil && (ix.resetting || bucket == "" || ix.stale[bucket])
}

// waitRebuilt waits while a pending rebuild concerns bucket ("" for any).
func (ix *index) waitRebuilt(ctx context.Context, bucket string) error {
	var timer *time.Timer
	for {
		ix.mu.Lock()
		waits, ch, changed := ix.waitsLocked(bucket), ix.rebuilding, ix.changed
		ix.mu.Unlock()
		if !waits {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(rebuildWait)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-changed: // it may start to concern bucket
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return errRebuilding()
		}
	}
}

// rebuildLive rebuilds the index while the node runs, trying until it
// succeeds or the index closes.
func (ix *index) rebuildLive(why string) {
	defer ix.wg.Done()
	began := time.Now()
	ix.log.Warn("index: rebuilding while running", "why", why)
	delay := 20 * time.Millisecond
	var logged time.Time // a missing bucket fails every attempt: log some
	for {
		err := ix.rebuildAttempt()
		if ix.ctx.Err() != nil {
			ix.rebuildEnded()
			return
		}
		if err == nil {
			ix.mu.Lock()
			again := ix.again
			ix.mu.Unlock()
			if !again {
				break
			}
			err = errors.New("a watch ended during the rebuild")
		}
		if time.Since(logged) > 30*time.Second {
			logged = time.Now()
			ix.log.Warn("index: rebuild attempt failed; trying again", "why", why, "err", err, "in", delay)
		}
		select {
		case <-ix.ctx.Done():
			ix.rebuildEnded()
			return
		case <-time.After(delay):
		case <-ix.kick:
		}
		delay = min(2*delay, rebuildRetryMax)
	}
	ix.mu.Lock()
	caught := fmt.Sprint(ix.caughtUp)
	ix.mu.Unlock()
	ix.log.Info("index: rebuilt while running", "why", why, "entries", caught, "took", time.Since(began))
	ix.rebuildEnded()
}

// kickRebuild has a rebuild waiting for a missing bucket try again now: a
// query has just found the bucket.
func (ix *index) kickRebuild() {
	select {
	case ix.kick <- struct{}{}:
	default:
	}
}

// rebuildAttempt replaces the file's content with the buckets' as they are
// now. It leaves the file alone while a bucket is missing.
func (ix *index) rebuildAttempt() error {
	ctx, cancel := context.WithTimeout(ix.ctx, rebuildTimeout)
	defer cancel()
	infos, err := ix.streamInfos(ctx)
	if err != nil {
		return err
	}
	ix.mu.Lock()
	ix.resetting = true
	ix.broadcastLocked()
	ix.mu.Unlock()
	ix.stopWatches()
	ix.mu.Lock()
	ix.gen++
	for name, info := range infos {
		ix.created[name] = streamCreated(info)
	}
	ix.again = false
	ix.broadcastLocked()
	ix.mu.Unlock()
	if err := ix.rebuild(ctx, infos); err != nil {
		ix.stopWatches()
		ix.applyMu.Lock()
		ix.staging = nil
		ix.applyMu.Unlock()
		return err
	}
	return nil
}

// rebuildEnded ends the pending rebuild (opening the index is one) and starts
// another if a watch of the one that ended has failed.
func (ix *index) rebuildEnded() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	again := ix.again && !ix.closed && ix.ctx.Err() == nil
	ix.again = false
	if again {
		ix.resetting = false
		ix.rebuilds++
		ix.broadcastLocked()
		ix.wg.Add(1)
		go ix.rebuildLive("a watch ended during the last rebuild")
		return
	}
	if ix.rebuilding != nil {
		close(ix.rebuilding)
		ix.rebuilding = nil
	}
	ix.resetting = false
	clear(ix.stale)
	ix.broadcastLocked()
}

// liveRebuilds is how many rebuilds started while running, for tests.
func (ix *index) liveRebuilds() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.rebuilds
}
