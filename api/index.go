package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// index is this node's local copy of the users, presence_state, channels
// and members buckets in bbolt, with secondary indexes (index_tables.go), fed by KV
// watches, so queries filter, sort and paginate without a round trip per
// record (index_plan.go).
//
// The file survives restarts. Each batch of watch entries is applied in one
// bbolt transaction together with its secondary index entries and the
// bucket's last applied revision, so the file is always a consistent
// snapshot of each bucket at the revision it records. At start the watches
// resume after those revisions; the JetStream buckets keep the last entry of
// every key — a put, or the marker of a delete or purge — so what changed
// while the node was down, deletions included, is delivered again. The file
// is rebuilt from scratch instead (resumable, verify) when it is new, was
// written by a binary that indexes differently, may be torn by a machine
// crash (it is written without fsync), or when a bucket cannot replay what
// the file lacks: it was recreated, or its stream may have dropped entries
// past the recorded revision (age, size or TTL limits), or it has fewer
// subjects than the file has keys (purged). A purge of a delete marker that
// keeps the counts plausible goes unseen: Presence never purges markers, and
// whoever does must delete the api nodes' index directories.
//
// Reads are made current with sync: it asks JetStream for a bucket's last
// revision and waits until the watch has applied it, so a query sees every
// write that finished before it started, on any node (read-your-writes behind
// a load balancer). Concurrent queries share those requests (lastRev).
//
// A bucket deleted and recreated while the node runs (the workers do so when
// the presence state is lost) is told by those same requests, or by its
// watch ending, and the index is rebuilt from the new buckets without a
// restart (index_live.go).
type index struct {
	db     *bolt.DB
	tmpDir string
	log    *slog.Logger
	kvs    map[string]jetstream.KeyValue
	names  []string // bucket names, in the order given
	revs   map[string]*lastRev

	mu       sync.Mutex
	applied  map[string]uint64 // bucket → last revision applied
	changed  chan struct{}     // closed and replaced whenever applied advances
	caughtUp map[string]int    // bucket → entries applied before it was ready
	closed   bool
	// The streams followed, and rebuilds while running (index_live.go).
	gen        uint64            // bumped when a rebuild starts over the file
	created    map[string]string // bucket → creation time of the stream followed
	rebuilding chan struct{}     // closed when the pending rebuild ends; nil if none
	resetting  bool              // the file is being rebuilt: every query waits
	stale      map[string]bool   // buckets the pending rebuild is for
	again      bool              // the running rebuild's watches failed: once more
	rebuilds   int               // rebuilds while running, for tests
	kick       chan struct{}     // a query found a missing bucket back

	// applyMu orders applies with a rebuild's bulk load; while staging is
	// set (a rebuild catching up), applies only collect entries there.
	applyMu sync.Mutex
	staging map[string]*staged

	// resumed says the file was reused; rebuilt says why it was not.
	resumed bool
	rebuilt string

	ctx        context.Context // ends at close
	cancel     context.CancelFunc
	stopWatch  context.CancelFunc
	watchGroup sync.WaitGroup // the follow goroutines
	wg         sync.WaitGroup // lastRev requests
}

// syncTimeout bounds how long a query waits for a lagging watch before it is
// answered from what the index has.
const syncTimeout = 3 * time.Second

// batchMax bounds how many watch entries go into one bbolt transaction.
const batchMax = 1024

// Keys of the meta bucket.
var (
	metaBucket = []byte("meta")
	keyVersion = []byte("version")
	keyClean   = []byte("clean")
	keyBoot    = []byte("boot")
	keyBuilt   = []byte("built")
)

func revKey(bucket string) []byte     { return []byte("rev/" + bucket) }
func countKey(bucket string) []byte   { return []byte("count/" + bucket) }
func createdKey(bucket string) []byte { return []byte("created/" + bucket) }

// openIndex opens the index file in dir (a temporary one if dir is empty),
// resumes or rebuilds it, and returns once every watch has caught up.
func openIndex(ctx context.Context, dir, node string, log *slog.Logger, kvs ...jetstream.KeyValue) (*index, error) {
	began := time.Now()
	ix := &index{
		log: log, kvs: map[string]jetstream.KeyValue{}, revs: map[string]*lastRev{},
		applied: map[string]uint64{}, changed: make(chan struct{}), caughtUp: map[string]int{},
		created: map[string]string{}, stale: map[string]bool{},
		// Opening is the first rebuild: a watch failing meanwhile asks for
		// another one once the index is open.
		rebuilding: make(chan struct{}), resetting: true, kick: make(chan struct{}, 1),
	}
	ix.ctx, ix.cancel = context.WithCancel(context.Background())
	for _, kv := range kvs {
		ix.kvs[kv.Bucket()] = kv
		ix.names = append(ix.names, kv.Bucket())
		ix.revs[kv.Bucket()] = &lastRev{kv: kv}
	}
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
	if err := ix.openFile(path); err != nil {
		ix.close()
		return nil, err
	}
	fail := func(err error) (*index, error) {
		ix.close()
		return nil, fmt.Errorf("index: %w", err)
	}
	infos, err := ix.streamInfos(ctx)
	if err != nil {
		return fail(err)
	}
	ix.rebuilt = ix.resumable(infos)
	ix.resumed = ix.rebuilt == ""
	if ix.resumed {
		if err := ix.markOpen(); err != nil {
			return fail(err)
		}
		if err := ix.startWatches(ctx); err != nil {
			return fail(err)
		}
		reason, err := ix.verify(ctx)
		if err != nil {
			return fail(err)
		}
		if reason != "" {
			ix.stopWatches()
			ix.resumed, ix.rebuilt = false, reason
			if infos, err = ix.streamInfos(ctx); err != nil {
				return fail(err)
			}
		}
	}
	if !ix.resumed {
		if err := ix.rebuild(ctx, infos); err != nil {
			return fail(err)
		}
	}
	ix.mu.Lock()
	caught := fmt.Sprint(ix.caughtUp)
	for name, info := range infos {
		ix.created[name] = streamCreated(info)
	}
	ix.mu.Unlock()
	ix.rebuildEnded()
	if ix.resumed {
		log.Info("index: resumed", "file", path, "entries", caught, "took", time.Since(began))
	} else {
		log.Info("index: rebuilt", "file", path, "why", ix.rebuilt, "entries", caught, "took", time.Since(began))
	}
	return ix, nil
}

// openFile opens the bbolt file, replacing one bbolt cannot read.
func (ix *index) openFile(path string) error {
	// No fsync per transaction: a crash of the process loses nothing bbolt
	// has written, and after a crash of the machine (the boot id changed and
	// the file was not closed) the file is rebuilt.
	opts := &bolt.Options{Timeout: 2 * time.Second, NoSync: true, NoFreelistSync: true}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil && !errors.Is(err, bolt.ErrTimeout) {
		ix.log.Warn("index: unreadable file, starting a new one", "file", path, "err", err)
		if rmErr := os.Remove(path); rmErr == nil {
			db, err = bolt.Open(path, 0o600, opts)
		}
	}
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("index: %s is in use by another process (two api nodes with one node name?)", path)
		}
		return fmt.Errorf("index: open %s: %w", path, err)
	}
	ix.db = db
	return nil
}

// streamInfos reads each bucket's stream.
func (ix *index) streamInfos(ctx context.Context) (map[string]*jetstream.StreamInfo, error) {
	out := map[string]*jetstream.StreamInfo{}
	for _, name := range ix.names {
		info, err := streamInfo(ctx, ix.kvs[name])
		if err != nil {
			return nil, err
		}
		out[name] = info
	}
	return out, nil
}

func streamInfo(ctx context.Context, kv jetstream.KeyValue) (*jetstream.StreamInfo, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket(), err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return nil, fmt.Errorf("bucket %s: no stream info", kv.Bucket())
	}
	return bs.StreamInfo(), nil
}

// lastRevision is the bucket's latest revision (its stream's last sequence).
func lastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	info, err := streamInfo(ctx, kv)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// resumable says why the file cannot be resumed, or "" if it can.
func (ix *index) resumable(infos map[string]*jetstream.StreamInfo) string {
	var why string
	_ = ix.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		switch {
		case meta == nil:
			why = "new index file"
			return nil
		case string(meta.Get(keyVersion)) != fingerprint():
			why = "index layout or documents changed"
			return nil
		case string(meta.Get(keyBuilt)) != "1":
			why = "the last rebuild did not finish"
			return nil
		case string(meta.Get(keyClean)) != "1":
			if boot := bootID(); boot == "" || boot != string(meta.Get(keyBoot)) {
				why = "not closed cleanly before the machine restarted"
				return nil
			}
		}
		for _, name := range ix.names {
			info := infos[name]
			rev := readUint(meta.Get(revKey(name)))
			switch {
			case tx.Bucket([]byte(name)) == nil:
				why = "bucket " + name + " is not in the file"
			case string(meta.Get(createdKey(name))) != streamCreated(info):
				why = "bucket " + name + " was recreated"
			case rev > info.State.LastSeq:
				why = fmt.Sprintf("bucket %s ends at revision %d, before the file's %d", name, info.State.LastSeq, rev)
			case info.State.FirstSeq > rev+1 && !keepsLastPerKey(info.Config):
				why = fmt.Sprintf("bucket %s no longer holds the revisions after %d", name, rev)
			}
			if why != "" {
				return nil
			}
		}
		return nil
	})
	return why
}

// keepsLastPerKey reports whether a bucket's stream only ever drops an entry
// when a later entry of the same key replaces it. Then, whatever its first
// sequence, every key changed after a revision still has its last entry after
// it. Age, size, count and TTL limits drop entries without that guarantee.
func keepsLastPerKey(cfg jetstream.StreamConfig) bool {
	return cfg.MaxAge == 0 && cfg.MaxMsgs <= 0 && cfg.MaxBytes <= 0 && !cfg.AllowMsgTTL && cfg.SubjectDeleteMarkerTTL == 0
}

func streamCreated(info *jetstream.StreamInfo) string {
	return info.Created.UTC().Format(time.RFC3339Nano)
}

// fingerprint is indexFingerprint, computed once.
var fingerprint = sync.OnceValue(indexFingerprint)

// bootID names this boot of the machine ("" where unknown).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// reset empties the file for a rebuild from revision 0.
func (ix *index) reset(infos map[string]*jetstream.StreamInfo) error {
	err := ix.db.Update(func(tx *bolt.Tx) error {
		var names [][]byte
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, bytes.Clone(name))
			return nil
		})
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		create := [][]byte{metaBucket}
		for _, name := range ix.names {
			create = append(create, []byte(name))
		}
		for _, t := range tables {
			create = append(create, t.ixBucket(), t.refsBucket(), t.nBucket())
		}
		for _, name := range create {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(metaBucket)
		if err := meta.Put(keyVersion, []byte(fingerprint())); err != nil {
			return err
		}
		for _, name := range ix.names {
			if err := meta.Put(createdKey(name), []byte(streamCreated(infos[name]))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	clear(ix.applied)
	clear(ix.caughtUp)
	return nil
}

// markOpen records that the file is in use: until close marks it clean, a
// restart of the machine makes the next start rebuild it.
func (ix *index) markOpen() error {
	err := ix.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if err := meta.Put(keyClean, []byte("0")); err != nil {
			return err
		}
		return meta.Put(keyBoot, []byte(bootID()))
	})
	if err == nil {
		err = ix.db.Sync()
	}
	return err
}

// startWatches starts one watch per bucket after the revision the file holds
// and waits until each has delivered what the bucket had when it started.
func (ix *index) startWatches(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ix.ctx)
	ix.stopWatch = cancel
	from := map[string]uint64{}
	_ = ix.db.View(func(tx *bolt.Tx) error {
		for _, name := range ix.names {
			from[name] = readUint(tx.Bucket(metaBucket).Get(revKey(name)))
		}
		return nil
	})
	ready := make(chan string, len(ix.names))
	ix.mu.Lock()
	gen := ix.gen
	ix.mu.Unlock()
	for _, name := range ix.names {
		kv := ix.kvs[name]
		ix.mu.Lock()
		ix.applied[name] = from[name]
		ix.mu.Unlock()
		start, err := lastRevision(ctx, kv)
		if err != nil {
			return err
		}
		var opts []jetstream.WatchOpt
		if from[name] > 0 {
			opts = append(opts, jetstream.ResumeFromRevision(from[name]+1))
		}
		w, err := kv.WatchAll(wctx, opts...)
		if err != nil {
			return fmt.Errorf("watch %s: %w", name, err)
		}
		ix.watchGroup.Add(1)
		go ix.follow(wctx, name, gen, w, start, ready)
	}
	for range ix.names {
		select {
		case <-ready:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the watches to catch up: %w", ctx.Err())
		}
	}
	return nil
}

func (ix *index) stopWatches() {
	if ix.stopWatch != nil {
		ix.stopWatch()
	}
	ix.watchGroup.Wait()
}

// verify checks a resumed file against the buckets: it cannot hold more keys
// than a bucket has subjects (every live key keeps its last entry), unless
// entries were purged behind its back. It says why not to trust the file.
func (ix *index) verify(ctx context.Context) (string, error) {
	infos, err := ix.streamInfos(ctx)
	if err != nil {
		return "", err
	}
	var why string
	err = ix.db.View(func(tx *bolt.Tx) error {
		for _, name := range ix.names {
			if n := readUint(tx.Bucket(metaBucket).Get(countKey(name))); n > infos[name].State.NumSubjects {
				why = fmt.Sprintf("bucket %s has %d keys, the file %d: entries were purged", name, infos[name].State.NumSubjects, n)
				return nil
			}
		}
		return nil
	})
	return why, err
}

// follow applies one bucket's watch to the index in batches. start is the
// bucket's last revision before the watch began: once the initial values are
// in, the index holds at least that. gen is the rebuild generation that
// started the watch; if the watch ends on its own (the library gave up
// recreating its consumer: the stream was deleted), the index is rebuilt.
func (ix *index) follow(ctx context.Context, bucket string, gen uint64, w jetstream.KeyWatcher, start uint64, ready chan<- string) {
	defer ix.watchGroup.Done()
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
				if ctx.Err() == nil {
					ix.log.Warn("index: the watch ended; rebuilding", "bucket", bucket)
					ix.requestRebuild(gen, bucket, "the watch of "+bucket+" ended")
				}
				if !signalled {
					ready <- bucket // the rebuild waiting for it fails and goes again
				}
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
		if !signalled {
			ix.mu.Lock()
			ix.caughtUp[bucket] += len(batch)
			ix.mu.Unlock()
		}
		if initialDone && !signalled {
			signalled = true
			ix.advance(bucket, start)
			ready <- bucket
		}
	}
}

// apply writes a batch of one bucket's entries, the secondary index entries
// they change and the bucket's revision in one transaction.
func (ix *index) apply(bucket string, batch []jetstream.KeyValueEntry) error {
	if len(batch) == 0 {
		return nil
	}
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	last := batch[len(batch)-1].Revision()
	if st := ix.staging[bucket]; st != nil {
		for _, e := range batch {
			if e.Operation() == jetstream.KeyValuePut && len(e.Value()) > 0 {
				st.vals[e.Key()] = e.Value()
			} else {
				delete(st.vals, e.Key()) // the bucket starts empty
			}
		}
		st.rev = last
		ix.advance(bucket, last) // no query runs before the load
		return nil
	}
	t := tableOf[bucket]
	err := ix.db.Update(func(tx *bolt.Tx) error {
		data, meta := tx.Bucket([]byte(bucket)), tx.Bucket(metaBucket)
		n := int64(readUint(meta.Get(countKey(bucket))))
		// The last entry of each key, in key order.
		latest := make(map[string]jetstream.KeyValueEntry, len(batch))
		for _, e := range batch {
			latest[e.Key()] = e
		}
		keys := slices.Sorted(maps.Keys(latest))
		var ids []string
		for _, key := range keys {
			e, k := latest[key], []byte(key)
			had := data.Get(k) != nil
			var err error
			if e.Operation() == jetstream.KeyValuePut && len(e.Value()) > 0 {
				err = data.Put(k, e.Value())
				if !had {
					n++
				}
			} else {
				err = data.Delete(k)
				if had {
					n--
				}
			}
			if err != nil {
				return err
			}
			if t != nil {
				ids = append(ids, t.idOf(key))
			}
		}
		if t != nil {
			slices.Sort(ids)
			counts := map[string]int{}
			if err := t.reindex(tx, ids, counts); err != nil {
				return err
			}
			if err := t.writeCounts(tx, counts); err != nil {
				return err
			}
		}
		if err := meta.Put(countKey(bucket), uintBytes(uint64(max(n, 0)))); err != nil {
			return err
		}
		return meta.Put(revKey(bucket), uintBytes(last))
	})
	// Advance even on a failed write: the watch will not deliver these
	// entries again, and readers must not wait for them forever. The file
	// still records the revision before them, so the next start replays them.
	ix.advance(bucket, last)
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
// call. The buckets' last revisions are asked for at once; a watch lagging
// past syncTimeout is logged and the query goes on.
//
// The same answers tell whether a bucket was recreated under the index (its
// stream's creation time changed, or it ends before what the index applied)
// or is gone; then the index is rebuilt (index_live.go) and the query waits
// for that, up to rebuildWait, before asking again. It is answered from the
// new bucket, or gets errRebuilding (503, try again).
func (ix *index) sync(ctx context.Context, buckets ...string) error {
	calls := make([]*revCall, len(buckets))
	for i, name := range buckets {
		l := ix.revs[name]
		if l == nil {
			return fmt.Errorf("index: bucket %s is not indexed", name)
		}
		calls[i] = l.start(ix)
	}
	for i, c := range calls {
		if err := ix.syncBucket(ctx, buckets[i], c); err != nil {
			return err
		}
	}
	return nil
}

// syncAttempts bounds how often one query asks for a bucket's last revision
// again because a rebuild moved the index to another stream meanwhile.
const syncAttempts = 4

func (ix *index) syncBucket(ctx context.Context, bucket string, c *revCall) error {
	for attempt := 0; attempt < syncAttempts; attempt++ {
		if attempt > 0 {
			if err := ix.waitRebuilt(ctx, bucket); err != nil {
				return err
			}
			c = ix.revs[bucket].start(ix)
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		ix.mu.Lock()
		gen, created, waits, resetting := ix.gen, ix.created[bucket], ix.waitsLocked(bucket), ix.resetting
		ix.mu.Unlock()
		switch {
		case waits && !resetting && c.err == nil:
			ix.kickRebuild() // it may be waiting for this bucket to exist
			continue
		case c.unsure || c.gen != gen || waits:
			continue // a rebuild started or ended meanwhile: ask again after it
		case c.err != nil:
			if !isGone(c.err) {
				return fmt.Errorf("index: %s: %w", bucket, c.err)
			}
			ix.requestRebuild(c.gen, bucket, "bucket "+bucket+" is gone")
			continue
		case c.created != created:
			ix.requestRebuild(c.gen, bucket, "bucket "+bucket+" was recreated")
			continue
		case c.rev < c.applied:
			ix.requestRebuild(c.gen, bucket, fmt.Sprintf("bucket %s ends at revision %d, before the index's %d", bucket, c.rev, c.applied))
			continue
		}
		again, err := ix.waitFor(ctx, bucket, c.rev, gen)
		if err != nil || !again {
			return err
		}
	}
	return errRebuilding()
}

// waitFor waits until the watch of bucket has applied rev. again says that a
// rebuild started or ended meanwhile, so rev may belong to another stream.
func (ix *index) waitFor(ctx context.Context, bucket string, rev, gen uint64) (again bool, err error) {
	timer := time.NewTimer(syncTimeout)
	defer timer.Stop()
	for {
		ix.mu.Lock()
		applied, ch := ix.applied[bucket], ix.changed
		moved := ix.gen != gen || ix.waitsLocked(bucket)
		ix.mu.Unlock()
		if moved {
			return true, nil
		}
		if applied >= rev {
			return false, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			ix.log.Warn("index: watch is lagging; answering from the index as it is", "bucket", bucket, "applied", applied, "want", rev)
			return false, nil
		}
	}
}

// lastRev asks JetStream for one bucket's last revision on behalf of every
// query that needs it. A query may only use an answer to a request sent after
// it arrived; so while one request is out, the queries arriving meanwhile
// share the next one, sent when it returns. Under load that is at most one
// request out per bucket, whatever the number of queries.
type lastRev struct {
	kv   jetstream.KeyValue
	mu   sync.Mutex
	busy bool
	next *revCall
	sent atomic.Uint64 // requests sent, for benchmarks
}

// revCall is one request for a bucket's stream info: its last revision and
// creation time, and what the index followed just before it was sent (the
// rebuild generation and the revision applied), to tell a recreated bucket.
type revCall struct {
	done    chan struct{}
	rev     uint64
	created string
	err     error
	gen     uint64
	applied uint64
	unsure  bool // the file was being rebuilt: gen and applied say nothing
}

// start joins (or sends) a request sent after now.
func (l *lastRev) start(ix *index) *revCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next = &revCall{done: make(chan struct{})}
	}
	c := l.next
	if !l.busy {
		ix.mu.Lock()
		closed := ix.closed
		if !closed {
			ix.wg.Add(1)
		}
		ix.mu.Unlock()
		if closed {
			c.err = errors.New("index is closed")
			close(c.done)
			l.next = nil
			return c
		}
		l.busy, l.next = true, nil
		go l.run(ix, c)
	}
	return c
}

func (l *lastRev) run(ix *index, c *revCall) {
	defer ix.wg.Done()
	bucket := l.kv.Bucket()
	for c != nil {
		ix.mu.Lock()
		c.gen, c.applied, c.unsure = ix.gen, ix.applied[bucket], ix.resetting
		ix.mu.Unlock()
		ctx, cancel := context.WithTimeout(ix.ctx, syncTimeout)
		l.sent.Add(1)
		info, err := streamInfo(ctx, l.kv)
		cancel()
		if err != nil {
			c.err = err
		} else {
			c.rev, c.created = info.State.LastSeq, streamCreated(info)
		}
		close(c.done)
		l.mu.Lock()
		c, l.next = l.next, nil
		l.busy = c != nil
		l.mu.Unlock()
	}
}

// isGone says err is JetStream's answer about a bucket that does not exist.
func isGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// view runs fn in a read transaction of a fully built file. While a rebuild
// loads it, view waits for that (up to rebuildWait) or fails with
// errRebuilding.
func (ix *index) view(fn func(tx *bolt.Tx) error) error {
	for attempt := 0; ; attempt++ {
		built := true
		err := ix.db.View(func(tx *bolt.Tx) error {
			// Checked in the transaction that reads: a rebuild empties the
			// file and marks it built only once it is whole again.
			if meta := tx.Bucket(metaBucket); meta == nil || string(meta.Get(keyBuilt)) != "1" {
				built = false
				return nil
			}
			return fn(tx)
		})
		switch {
		case built:
			return err
		case attempt > 0:
			return errRebuilding()
		}
		if err := ix.waitRebuilt(context.Background(), ""); err != nil {
			return err
		}
	}
}

// close stops the watches and any rebuild, waits for them, marks the file
// clean and closes it.
func (ix *index) close() error {
	ix.mu.Lock()
	ix.closed = true
	ix.mu.Unlock()
	ix.cancel()  // ends the watches, a rebuild and the lastRev requests
	ix.wg.Wait() // after it, nothing starts watches any more
	ix.stopWatches()
	var err error
	if ix.db != nil {
		if ix.tmpDir == "" {
			err = ix.db.Update(func(tx *bolt.Tx) error {
				if meta := tx.Bucket(metaBucket); meta != nil {
					return meta.Put(keyClean, []byte("1"))
				}
				return nil
			})
			if err == nil {
				err = ix.db.Sync()
			}
		}
		if cerr := ix.db.Close(); err == nil {
			err = cerr
		}
	}
	ix.removeTmp()
	return err
}

func (ix *index) removeTmp() {
	if ix.tmpDir != "" {
		_ = os.RemoveAll(ix.tmpDir)
	}
}

// stats describes how the index started, for logs and tests.
func (ix *index) stats() (resumed bool, rebuilt string, caughtUp map[string]int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make(map[string]int, len(ix.caughtUp))
	for k, v := range ix.caughtUp {
		out[k] = v
	}
	return ix.resumed, ix.rebuilt, out
}
