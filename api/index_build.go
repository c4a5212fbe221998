package api

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// A rebuild loads the buckets in bulk rather than entry by entry: while the
// watches deliver the buckets' current values, the entries only collect in
// memory (staged); once every watch has caught up, each bucket is written in
// key order and the secondary indexes are computed in one pass, sorted and
// appended. Random inserts into a growing B+tree would rewrite most of its
// pages on every batch; appends write each page once.

// staged is one bucket's entries during a rebuild.
type staged struct {
	vals map[string][]byte
	rev  uint64
}

// bulkChunk is how many keys one transaction of a bulk load appends.
const bulkChunk = 50_000

// bulkFill packs appended pages, leaving a little room for later inserts.
const bulkFill = 0.9

// rebuild empties the file and loads the buckets from scratch.
func (ix *index) rebuild(ctx context.Context, infos map[string]*jetstream.StreamInfo) error {
	if err := ix.reset(infos); err != nil {
		return err
	}
	if err := ix.markOpen(); err != nil {
		return err
	}
	ix.applyMu.Lock()
	ix.staging = map[string]*staged{}
	for _, name := range ix.names {
		ix.staging[name] = &staged{vals: map[string][]byte{}}
	}
	ix.applyMu.Unlock()
	if err := ix.startWatches(ctx); err != nil {
		return err
	}
	return ix.load()
}

// load writes what the watches staged, builds the secondary indexes and
// marks the file built. Applies wait meanwhile, then go on one by one.
func (ix *index) load() error {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	staging := ix.staging
	ix.staging = nil
	for _, name := range ix.names {
		st := staging[name]
		keys := slices.Sorted(maps.Keys(st.vals))
		err := ix.appendSorted([]byte(name), len(keys), func(i int) ([]byte, []byte) {
			return []byte(keys[i]), st.vals[keys[i]]
		})
		if err == nil {
			err = ix.db.Update(func(tx *bolt.Tx) error {
				meta := tx.Bucket(metaBucket)
				if err := meta.Put(countKey(name), uintBytes(uint64(len(keys)))); err != nil {
					return err
				}
				return meta.Put(revKey(name), uintBytes(st.rev))
			})
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", name, err)
		}
		staging[name] = nil // let it go
	}
	for _, t := range tables {
		if err := ix.loadTable(t); err != nil {
			return fmt.Errorf("index %s: %w", t.name, err)
		}
	}
	return ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(keyBuilt, []byte("1"))
	})
}

// loadTable computes every document's entries and appends them, with the
// per-document refs and the per-value counts.
func (ix *index) loadTable(t *table) error {
	var keys [][]byte
	type docRefs struct {
		id   string
		refs []byte
	}
	var refs []docRefs
	counts := map[string]int{}
	err := ix.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(t.data)).ForEach(func(k, _ []byte) error {
			id := t.idOf(string(k))
			doc, ok := t.doc(tx, id)
			if !ok {
				return nil
			}
			es := t.entries(id, doc)
			keys = append(keys, es...)
			refs = append(refs, docRefs{id, encodeRefs(es)})
			for _, e := range es {
				if e[0] == kindEq {
					counts[string(e[:len(e)-len(id)])]++
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	slices.SortFunc(keys, bytes.Compare)
	if err := ix.appendSorted(t.ixBucket(), len(keys), func(i int) ([]byte, []byte) { return keys[i], []byte{} }); err != nil {
		return err
	}
	keys = nil
	slices.SortFunc(refs, func(a, b docRefs) int { return strings.Compare(a.id, b.id) })
	if err := ix.appendSorted(t.refsBucket(), len(refs), func(i int) ([]byte, []byte) { return []byte(refs[i].id), refs[i].refs }); err != nil {
		return err
	}
	ns := slices.Sorted(maps.Keys(counts))
	return ix.appendSorted(t.nBucket(), len(ns), func(i int) ([]byte, []byte) {
		return []byte(ns[i]), uintBytes(uint64(counts[ns[i]]))
	})
}

// appendSorted puts n key/value pairs, in key order, into an empty bucket.
func (ix *index) appendSorted(bucket []byte, n int, kv func(i int) ([]byte, []byte)) error {
	for from := 0; from < n; from += bulkChunk {
		err := ix.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			b.FillPercent = bulkFill
			for i := from; i < min(from+bulkChunk, n); i++ {
				k, v := kv(i)
				if err := b.Put(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
