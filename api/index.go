package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// index is this node's local copy of the users, presence_state and channels
// buckets in bbolt, fed by KV watches, so queries filter, sort and paginate
// without a round trip per record.
//
// The index is a cache, never a source of truth: it is emptied at start and
// rebuilt from the watches' initial values, so it cannot keep a key deleted
// while the node was down. That is also why bbolt runs without fsync.
//
// Reads are made current with sync: it asks JetStream for a bucket's last
// revision and waits until the watch has applied it, so a query sees every
// write that finished before it started, on any node (read-your-writes behind
// a load balancer), at the cost of one small request per bucket.
type index struct {
	db     *bolt.DB
	tmpDir string
	log    *slog.Logger
	kvs    map[string]jetstream.KeyValue

	mu      sync.Mutex
	applied map[string]uint64 // bucket → last revision applied
	changed chan struct{}     // closed and replaced whenever applied advances

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// syncTimeout bounds how long a query waits for a lagging watch before it is
// answered from what the index has.
const syncTimeout = 3 * time.Second

// batchMax bounds how many watch entries go into one bbolt transaction.
const batchMax = 1024

// openIndex opens (and empties) the index file in dir, starts one watch per
// bucket and returns once every watch has delivered its initial values.
func openIndex(ctx context.Context, dir, node string, log *slog.Logger, kvs ...jetstream.KeyValue) (*index, error) {
	ix := &index{log: log, kvs: map[string]jetstream.KeyValue{}, applied: map[string]uint64{}, changed: make(chan struct{})}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "presence-api-index-")
		if err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		dir, ix.tmpDir = tmp, tmp
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	path := filepath.Join(dir, "api-"+node+".bolt")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true, NoFreelistSync: true})
	if err != nil {
		ix.removeTmp()
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("index: %s is in use by another process (two api nodes with one node name?)", path)
		}
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	ix.db = db
	err = db.Update(func(tx *bolt.Tx) error {
		for _, kv := range kvs {
			if err := tx.DeleteBucket([]byte(kv.Bucket())); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket([]byte(kv.Bucket())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		ix.close()
		return nil, fmt.Errorf("index: reset: %w", err)
	}

	wctx, cancel := context.WithCancel(context.Background())
	ix.cancel = cancel
	ready := make(chan string, len(kvs))
	for _, kv := range kvs {
		ix.kvs[kv.Bucket()] = kv
		start, err := lastRevision(ctx, kv)
		if err == nil {
			var w jetstream.KeyWatcher
			w, err = kv.WatchAll(wctx)
			if err == nil {
				ix.wg.Add(1)
				go ix.follow(wctx, kv.Bucket(), w, start, ready)
				continue
			}
		}
		ix.close()
		return nil, fmt.Errorf("index: watch %s: %w", kv.Bucket(), err)
	}
	for range kvs {
		select {
		case <-ready:
		case <-ctx.Done():
			ix.close()
			return nil, fmt.Errorf("index: waiting for initial values: %w", ctx.Err())
		}
	}
	return ix, nil
}

// lastRevision is the bucket's latest revision (its stream's last sequence).
func lastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return 0, fmt.Errorf("bucket %s: no stream info", kv.Bucket())
	}
	return bs.StreamInfo().State.LastSeq, nil
}

// follow applies one bucket's watch to the index in batches. start is the
// bucket's last revision before the watch began: once the initial values are
// in, the index holds at least that.
func (ix *index) follow(ctx context.Context, bucket string, w jetstream.KeyWatcher, start uint64, ready chan<- string) {
	defer ix.wg.Done()
	defer func() {
		_ = w.Stop()
		// The watcher's callback blocks while its channel is full; drain it
		// until the subscription closes so no NATS goroutine stays stuck.
		timeout := time.After(2 * time.Second)
		for {
			select {
			case _, ok := <-w.Updates():
				if !ok {
					return
				}
			case <-timeout:
				return
			}
		}
	}()
	updates := w.Updates()
	signalled := false
	for {
		var first jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				return
			}
			first = e
		}
		batch := []jetstream.KeyValueEntry{}
		initialDone := first == nil
		if first != nil {
			batch = append(batch, first)
		drain:
			for len(batch) < batchMax {
				select {
				case e, ok := <-updates:
					if !ok {
						break drain
					}
					if e == nil {
						initialDone = true
						break drain
					}
					batch = append(batch, e)
				default:
					break drain
				}
			}
		}
		if err := ix.apply(bucket, batch); err != nil {
			ix.log.Error("index: apply watch entries", "bucket", bucket, "err", err)
		}
		if initialDone && !signalled {
			signalled = true
			ix.advance(bucket, start)
			ready <- bucket
		}
	}
}

func (ix *index) apply(bucket string, batch []jetstream.KeyValueEntry) error {
	if len(batch) == 0 {
		return nil
	}
	err := ix.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		for _, e := range batch {
			var err error
			if e.Operation() == jetstream.KeyValuePut && len(e.Value()) > 0 {
				err = b.Put([]byte(e.Key()), e.Value())
			} else {
				err = b.Delete([]byte(e.Key()))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	// Advance even on a failed write: the watch will not deliver these
	// entries again, and readers must not wait for them forever.
	ix.advance(bucket, batch[len(batch)-1].Revision())
	return err
}

func (ix *index) advance(bucket string, rev uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if rev <= ix.applied[bucket] {
		return
	}
	ix.applied[bucket] = rev
	close(ix.changed)
	ix.changed = make(chan struct{})
}

// sync waits until the index holds every write made to buckets before the
// call. A watch lagging past syncTimeout is logged and the query goes on.
func (ix *index) sync(ctx context.Context, buckets ...string) error {
	for _, name := range buckets {
		kv := ix.kvs[name]
		if kv == nil {
			return fmt.Errorf("index: bucket %s is not indexed", name)
		}
		rev, err := lastRevision(ctx, kv)
		if err != nil {
			return fmt.Errorf("index: %s: %w", name, err)
		}
		if err := ix.waitFor(ctx, name, rev); err != nil {
			return err
		}
	}
	return nil
}

func (ix *index) waitFor(ctx context.Context, bucket string, rev uint64) error {
	timer := time.NewTimer(syncTimeout)
	defer timer.Stop()
	for {
		ix.mu.Lock()
		applied, ch := ix.applied[bucket], ix.changed
		ix.mu.Unlock()
		if applied >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			ix.log.Warn("index: watch is lagging; answering from the index as it is", "bucket", bucket, "applied", applied, "want", rev)
			return nil
		}
	}
}

// view runs fn in a read transaction.
func (ix *index) view(fn func(tx *bolt.Tx) error) error { return ix.db.View(fn) }

// close stops the watches, waits for them and closes the file.
func (ix *index) close() error {
	if ix.cancel != nil {
		ix.cancel()
	}
	ix.wg.Wait()
	var err error
	if ix.db != nil {
		err = ix.db.Close()
	}
	ix.removeTmp()
	return err
}

func (ix *index) removeTmp() {
	if ix.tmpDir != "" {
		_ = os.RemoveAll(ix.tmpDir)
	}
}
