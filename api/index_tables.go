package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// table is one kind of queryable document in the index (users, channels):
// where its records live and which fields have secondary indexes.
//
// Index entries are computed from the very document filters and sorts see
// (userView, channelDoc), never from the stored record, so an index can only
// disagree with a filter when the document function changes — and then the
// index fingerprint changes and the file is rebuilt (indexFingerprint).
//
// Every entry of a document lives in the table's bucket (ix.<name>), keyed so
// that one byte says its kind:
//
//	'e' field 0 value 0 id         equality: value is typed ('s'tring, 'b'ool,
//	                               'n'umber); '?' holds values of other kinds,
//	                               which an equality lookup always includes
//	's' field 0 section value id   sort: section 0 holds times (12 bytes, in
//	                               time order) or, for the id field, nothing;
//	                               1 is "missing" (sorts last either way);
//	                               2 is any other kind, which turns the index
//	                               off for that field while it exists
//	'w' field 0 word 0 id          autocomplete: each lower-cased word and the
//	                               whole lower-cased value
//
// The document's own list of entries is kept under its id in ix.<name>.refs,
// so an update deletes exactly what the previous version added; and
// ix.<name>.n counts the documents under each equality value, which is what
// the planner uses to pick the most selective lookup.
type table struct {
	name    string
	data    string // the bucket of the records (a KV bucket's name)
	idField string // the unique field; its sort index is the id order
	eq      []string
	sorted  []string // besides idField
	words   []string
	// dataKey turns an id into the record's key; idOf reverses it.
	dataKey func(id string) string
	idOf    func(key string) string
	// doc builds the document of id from the records in tx.
	doc func(tx *bolt.Tx, id string) (filter.Map, bool)
	// entriesOf, if set, replaces the entries above (the members table's
	// are per channel; index_members.go); more adds to them.
	entriesOf func(id string, doc filter.Map) [][]byte
	more      func(id string, doc filter.Map) [][]byte
	// membersField is the field holding a document's member ids, which
	// the members table answers ("" if none).
	membersField string
}

// Index entry kinds and sort sections.
const (
	kindEq    = 'e'
	kindSort  = 's'
	kindWords = 'w'

	secPresent = 0
	secMissing = 1
	secOdd     = 2
)

// timeEncLen is the length of an encoded time in a sort key.
const timeEncLen = 12

var usersTable = &table{
	name:    "users",
	data:    store.BucketUsers,
	idField: "id",
	// online and role have few values; teams is how apps partition users.
	// Custom fields are not indexed: their number and cardinality are the
	// app's, and a filter on one is still answered by the other indexes,
	// a sorted walk or a scan.
	eq:      []string{"online", "role", "teams"},
	sorted:  []string{"created_at", "updated_at", "last_active"},
	words:   []string{"name"},
	more:    onlineActivity,
	dataKey: store.Key,
	idOf:    store.ID,
	doc: func(tx *bolt.Tx, id string) (filter.Map, bool) {
		u, ok := readUser(tx, id)
		if !ok {
			return nil, false
		}
		u.ID = id
		// The fields indexed do not depend on the viewer.
		return filter.Map(userView(u, readPresence(tx, id), model.Other)), true
	},
}

var channelsTable = &table{
	name:    "channels",
	data:    store.BucketChannels,
	idField: "cid",
	// created_by_id, with the user's channels (members, from the members
	// table), is what a client-side caller may read.
	eq:           []string{"type", "created_by_id"},
	membersField: "members",
	sorted:       []string{"created_at", "updated_at", "last_updated", "last_message_at"},
	words:        []string{"name"},
	dataKey:      cidKey,
	idOf:         store.ChannelCID,
	doc: func(tx *bolt.Tx, cid string) (filter.Map, bool) {
		k := cidKey(cid)
		if k == "" {
			return nil, false
		}
		raw := tx.Bucket([]byte(store.BucketChannels)).Get([]byte(k))
		var ch model.Channel
		if raw == nil || json.Unmarshal(raw, &ch) != nil {
			return nil, false
		}
		// Neither the member count nor the members are indexed here (the
		// members table has them), so a member change never reindexes
		// its channel.
		return channelDoc(ch, 0, nil), true
	},
}

// onlineActive is the users' sort index of last_active that holds online
// users only: the online members of a channel by activity are found by
// walking it (findMembers) rather than every user's. No filter or sort
// names it: only the fields a table lists as sorted are walked for them.
const onlineActive = "online:last_active"

func onlineActivity(id string, doc filter.Map) [][]byte {
	if doc["online"] != true {
		return nil
	}
	sec, enc := sortEnc(doc["last_active"])
	return [][]byte{sortKey(onlineActive, sec, enc, id)}
}

// tableOf is the table each indexed KV bucket feeds.
var tableOf = map[string]*table{
	store.BucketUsers:    usersTable,
	store.BucketPresence: usersTable,
	store.BucketChannels: channelsTable,
	store.BucketMembers:  membersTable,
}

// tables are every table of the index.
var tables = []*table{usersTable, channelsTable, membersTable}

func (t *table) ixBucket() []byte   { return []byte("ix." + t.name) }
func (t *table) refsBucket() []byte { return []byte("ix." + t.name + ".refs") }
func (t *table) nBucket() []byte    { return []byte("ix." + t.name + ".n") }

func (t *table) isSorted(field string) bool {
	return field == t.idField || slices.Contains(t.sorted, field)
}

// entries are the index keys of the document id, sorted and unique.
func (t *table) entries(id string, doc filter.Map) [][]byte {
	if t.entriesOf != nil {
		return t.entriesOf(id, doc)
	}
	var out [][]byte
	for _, f := range t.eq {
		v, ok := doc[f]
		if !ok || v == nil {
			continue // $eq null is never answered from the index
		}
		if list, isList := asList(v); isList {
			for _, e := range list {
				out = append(out, eqKey(f, eqEnc(e), id))
			}
			continue
		}
		out = append(out, eqKey(f, eqEnc(v), id))
	}
	out = append(out, sortKey(t.idField, secPresent, nil, id))
	for _, f := range t.sorted {
		sec, enc := sortEnc(doc[f])
		out = append(out, sortKey(f, sec, enc, id))
	}
	for _, f := range t.words {
		v, ok := doc[f]
		if !ok {
			continue
		}
		list, isList := asList(v)
		if !isList {
			list = []any{v}
		}
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				continue
			}
			for _, w := range words(s) {
				out = append(out, wordKey(f, w, id))
			}
		}
	}
	if t.more != nil {
		out = append(out, t.more(id, doc)...)
	}
	// Sorted and unique: an array may repeat a value, a name a word.
	slices.SortFunc(out, bytes.Compare)
	return slices.CompactFunc(out, bytes.Equal)
}

// asList returns v's elements when it is an array, as filters see it.
func asList(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

// wordMax bounds the bytes of one autocomplete entry; a longer prefix is
// looked up by its first wordMax bytes (the filter decides the rest).
const wordMax = 64

// words are where $autocomplete can match s: the lower-cased value from its
// start and from the start of each later word (a letter or digit after
// anything else) to the end, so "le" and "ann l" both find "Ann Lee".
func words(s string) []string {
	s = strings.ToLower(s)
	out := []string{cut(s)}
	prevWord := true
	for i, r := range s {
		word := unicode.IsLetter(r) || unicode.IsDigit(r)
		if word && !prevWord {
			out = append(out, cut(s[i:]))
		}
		prevWord = word
	}
	return out
}

func cut(s string) string {
	if len(s) > wordMax {
		return s[:wordMax]
	}
	return s
}

// eqEnc encodes a value for an equality entry: the kinds filters compare
// (strings with strings, numbers with numbers, booleans with booleans) get a
// typed form; anything else is "?" and is included in every lookup.
func eqEnc(v any) []byte {
	switch x := v.(type) {
	case string:
		return append([]byte{'s'}, x...)
	case bool:
		if x {
			return []byte("b1")
		}
		return []byte("b0")
	}
	if f, ok := filter.AsNumber(v); ok {
		if f == 0 {
			f = 0 // -0 equals 0
		}
		return append([]byte{'n'}, strconv.FormatFloat(f, 'g', -1, 64)...)
	}
	return []byte{'?'}
}

// eqEncOK encodes a filter operand; false for null, which the index cannot
// answer ($eq null matches a missing field).
func eqEncOK(v any) ([]byte, bool) {
	if v == nil {
		return nil, false
	}
	return eqEnc(v), true
}

// sortEnc places a sort field's value: times in section 0, missing values
// (absent or null, which sort last in either direction) in section 1,
// anything else in section 2.
func sortEnc(v any) (byte, []byte) {
	switch x := v.(type) {
	case nil:
		return secMissing, nil
	case time.Time:
		return secPresent, timeEnc(x)
	case *time.Time:
		if x == nil {
			return secMissing, nil
		}
		return secPresent, timeEnc(*x)
	}
	return secOdd, nil
}

// timeEnc is t in 12 bytes that sort as the times do: seconds since the
// epoch with the sign bit flipped, then nanoseconds.
func timeEnc(t time.Time) []byte {
	b := make([]byte, timeEncLen)
	binary.BigEndian.PutUint64(b, uint64(t.Unix())^(1<<63))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
	return b
}

func eqPrefix(field string, enc []byte) []byte {
	k := make([]byte, 0, 3+len(field)+len(enc))
	k = append(k, kindEq)
	k = append(k, field...)
	k = append(k, 0)
	k = append(k, enc...)
	return append(k, 0)
}

func eqKey(field string, enc []byte, id string) []byte {
	return append(eqPrefix(field, enc), id...)
}

func sortPrefix(field string, sec byte) []byte {
	k := make([]byte, 0, 3+len(field)+timeEncLen+32)
	k = append(k, kindSort)
	k = append(k, field...)
	return append(k, 0, sec)
}

func sortKey(field string, sec byte, enc []byte, id string) []byte {
	return append(append(sortPrefix(field, sec), enc...), id...)
}

func wordPrefix(field, word string) []byte {
	k := make([]byte, 0, 2+len(field)+len(word))
	k = append(k, kindWords)
	k = append(k, field...)
	k = append(k, 0)
	return append(k, word...)
}

func wordKey(field, word, id string) []byte {
	return append(append(wordPrefix(field, word), 0), id...)
}

// keyID is the id at the end of an equality or word entry (ids never hold
// a 0 byte).
func keyID(k []byte) string {
	return string(k[bytes.LastIndexByte(k, 0)+1:])
}

// encodeRefs packs a document's entries.
func encodeRefs(keys [][]byte) []byte {
	n := 0
	for _, k := range keys {
		n += binary.MaxVarintLen32 + len(k)
	}
	b := make([]byte, 0, n)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

// decodeRefs unpacks encodeRefs, copying out of the transaction's memory.
func decodeRefs(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return out
		}
		out = append(out, bytes.Clone(b[w:w+int(n)]))
		b = b[w+int(n):]
	}
	return out
}

// reindex brings the entries of ids in line with their documents now in
// tx. counts collects the changes of the per-value counts, written once per
// batch. The changes of all ids are made in key order: a batch touches keys
// all over the index, and visiting them in order keeps each B+tree page hot
// while it is changed.
func (t *table) reindex(tx *bolt.Tx, ids []string, counts map[string]int) error {
	ix, refs := tx.Bucket(t.ixBucket()), tx.Bucket(t.refsBucket())
	var dels, puts [][]byte
	type refChange struct {
		id   string
		refs []byte // nil: delete
	}
	var changed []refChange
	for _, id := range ids {
		var next [][]byte
		if doc, ok := t.doc(tx, id); ok {
			next = t.entries(id, doc)
		}
		prev := decodeRefs(refs.Get([]byte(id)))
		// Both are sorted and unique: merge them.
		i, j := 0, 0
		for i < len(prev) || j < len(next) {
			var c int
			switch {
			case i == len(prev):
				c = 1
			case j == len(next):
				c = -1
			default:
				c = bytes.Compare(prev[i], next[j])
			}
			switch {
			case c == 0:
				i++
				j++
				continue
			case c < 0:
				dels = append(dels, prev[i])
				if k := prev[i]; k[0] == kindEq {
					counts[string(k[:len(k)-len(id)])]--
				}
				i++
			default:
				puts = append(puts, next[j])
				if k := next[j]; k[0] == kindEq {
					counts[string(k[:len(k)-len(id)])]++
				}
				j++
			}
		}
		switch {
		case len(next) == 0 && len(prev) > 0:
			changed = append(changed, refChange{id, nil})
		case !slices.EqualFunc(prev, next, bytes.Equal):
			changed = append(changed, refChange{id, encodeRefs(next)})
		}
	}
	slices.SortFunc(dels, bytes.Compare)
	for _, k := range dels {
		if err := ix.Delete(k); err != nil {
			return err
		}
	}
	slices.SortFunc(puts, bytes.Compare)
	for _, k := range puts {
		if err := ix.Put(k, []byte{}); err != nil {
			return err
		}
	}
	for _, c := range changed {
		var err error
		if c.refs == nil {
			err = refs.Delete([]byte(c.id))
		} else {
			err = refs.Put([]byte(c.id), c.refs)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeCounts adds the per-value count changes to ix.<name>.n.
func (t *table) writeCounts(tx *bolt.Tx, counts map[string]int) error {
	b := tx.Bucket(t.nBucket())
	for k, d := range counts {
		if d == 0 {
			continue
		}
		n := int64(readUint(b.Get([]byte(k)))) + int64(d)
		var err error
		if n <= 0 {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), uintBytes(uint64(n)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func uintBytes(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func readUint(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// fingerprintSample is a user, a presence, a channel and a member with
// every indexed field set, run through the document functions to
// fingerprint the index.
func fingerprintSample() (model.User, model.Presence, model.Channel, model.Member) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	u := model.User{ID: "ann@x", Role: "admin", Name: "Ann Smith-Jones", Teams: []string{"red", "blue"},
		CreatedAt: at, UpdatedAt: at.Add(time.Second), Custom: map[string]any{"age": 31.0, "city": "Oslo"}}
	p := model.Presence{Conns: map[string]model.Conn{"gw~1~1": {Node: "gw", Epoch: 1, OpenedAt: at}},
		LastActive: at.Add(time.Minute), Online: true, Version: 3}
	ch := model.Channel{Type: "messaging", ID: "general", CreatedByID: "ann@x", CreatedAt: at, UpdatedAt: at.Add(time.Hour),
		Custom: map[string]any{"name": "General Talk", "color": "green"}}
	m := model.Member{UserID: "ann@x", ChannelRole: roleMember, CreatedAt: at, UpdatedAt: at}
	return u, p, ch, m
}

// formatVersion changes with the layout of the index file.
const formatVersion = 1

// indexFingerprint names the index layout and what the document functions
// put into it, so a binary that indexes differently rebuilds the file.
func indexFingerprint() string {
	u, p, ch, m := fingerprintSample()
	var b strings.Builder
	b.WriteString("presence-api-index/" + strconv.Itoa(formatVersion) + "\n")
	for _, t := range tables {
		b.WriteString(strings.Join([]string{t.name, t.data, t.idField, strings.Join(t.eq, ","), strings.Join(t.sorted, ","), strings.Join(t.words, ",")}, ";") + "\n")
	}
	for _, k := range usersTable.entries(u.ID, filter.Map(userView(u, p, model.Other))) {
		b.WriteString(strconv.Quote(string(k)) + "\n")
	}
	for _, k := range channelsTable.entries(ch.CID(), channelDoc(ch, 0, nil)) {
		b.WriteString(strconv.Quote(string(k)) + "\n")
	}
	key := store.MemberKey(ch.Type, ch.ID, m.UserID)
	for _, k := range membersTable.entries(key, memberIndexDoc(ch.CID(), m)) {
		b.WriteString(strconv.Quote(string(k)) + "\n")
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}
