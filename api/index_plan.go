package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/filter"
)

// How a query is answered (find):
//
//  1. Every top-level condition the index can answer becomes a source of
//     candidate ids: the id field by $eq/$in (key lookups), an equality
//     index by $eq/$in/$contains, the word index by $autocomplete, and the
//     caller's scope (a client-side channel query sees only its member and
//     creator channels). Each is a superset of the matches.
//  2. The planner prices four plans and runs the cheapest: read every id of
//     the smallest source and sort the documents (fetch); order those ids
//     by the sort keys their refs record and read them in that order until
//     the page is full (order); walk the first sort field's index in order
//     until the page is full, skipping ids not in the smallest source
//     (walk), or checking every source on index keys (walk with checks,
//     also what runs when no source is small). The sources not used to
//     pick candidates are checked on index keys before a document is
//     decoded. A walk gone on far longer than priced gives way to a
//     cheaper plan. With no small source and no usable sort index it scans.
//
// The filter is always matched on the document, so an index only has to
// never miss a match; that keeps every plan correct and the full scan the
// answer of last resort.

// The planner's costs, in units of one index step (a cursor move or a key
// lookup, about 0.1–0.3 µs): loadCost is decoding and matching a document;
// a source larger than collectCap is not collected but checked id by id.
// Variables only so that tests can force every plan.
var (
	loadCost   = 40
	refCost    = 4
	collectCap = 20000
)

// conjunct is a condition every match meets, in the form the index uses:
// the field equals one of values ($eq, $in, $contains), or, with
// autocomplete, one of its words starts with values[0]; or, with op (a
// range), it compares with values[0] as op says.
type conjunct struct {
	field        string
	autocomplete bool
	op           filter.Op // $gt, $gte, $lt, $lte; "" for the others
	values       []any
}

// conjuncts lists the conditions at the top level of a filter already
// accepted by filter.Parse (and inside its top-level $and): those the
// index looks values up for, and the ranges.
func conjuncts(raw json.RawMessage) (out, ranges []conjunct) {
	var v any
	if len(bytes.TrimSpace(raw)) == 0 || json.Unmarshal(raw, &v) != nil {
		return nil, nil
	}
	var walk func(m map[string]any)
	walk = func(m map[string]any) {
		for field, c := range m {
			if field == "$and" {
				list, _ := c.([]any)
				for _, e := range list {
					if sub, ok := e.(map[string]any); ok {
						walk(sub)
					}
				}
				continue
			}
			if strings.HasPrefix(field, "$") {
				continue
			}
			ops, isObj := c.(map[string]any)
			if !isObj {
				if _, isList := c.([]any); !isList {
					out = append(out, conjunct{field: field, values: []any{c}})
				}
				continue
			}
			for op, arg := range ops {
				switch filter.Op(op) {
				case filter.OpEq, filter.OpContains:
					out = append(out, conjunct{field: field, values: []any{arg}})
				case filter.OpIn:
					if list, ok := arg.([]any); ok {
						out = append(out, conjunct{field: field, values: list})
					}
				case filter.OpAutocomplete:
					if s, ok := arg.(string); ok {
						out = append(out, conjunct{field: field, autocomplete: true, values: []any{strings.ToLower(s)}})
					}
				case filter.OpGt, filter.OpGte, filter.OpLt, filter.OpLte:
					ranges = append(ranges, conjunct{field: field, op: filter.Op(op), values: []any{arg}})
				}
			}
		}
	}
	if m, ok := v.(map[string]any); ok {
		walk(m)
	}
	return out, ranges
}

// eqTerm is one equality entry to look up: field holds enc.
type eqTerm struct {
	field string
	enc   []byte
}

// source yields candidate ids: a superset of the documents that match.
type source struct {
	est     int             // how many ids it yields; collectCap+1 if more
	cost    int             // of one has call, in index steps
	collect int             // of collecting one id, in index steps
	set     map[string]bool // the ids, if already at hand
	each    func(yield func(id string))
	has     func(id string) bool
}

// reader reads one table's index inside a transaction.
type reader struct {
	tx   *bolt.Tx
	t    *table
	ix   *bolt.Bucket
	n    *bolt.Bucket
	refs *bolt.Bucket
	data *bolt.Bucket
	meta *bolt.Bucket
}

func newReader(tx *bolt.Tx, t *table) *reader {
	return &reader{
		tx: tx, t: t, ix: tx.Bucket(t.ixBucket()), n: tx.Bucket(t.nBucket()), refs: tx.Bucket(t.refsBucket()),
		data: tx.Bucket([]byte(t.data)), meta: tx.Bucket(metaBucket),
	}
}

// source turns a conjunct into a source, or nil if the index cannot answer it.
func (r *reader) source(c conjunct) *source {
	switch {
	case c.autocomplete:
		if !slices.Contains(r.t.words, c.field) {
			return nil
		}
		return r.wordSource(c.field, c.values[0].(string))
	case c.field == r.t.idField:
		set := map[string]bool{}
		for _, v := range c.values {
			if s, ok := v.(string); ok && r.t.dataKey(s) != "" {
				set[s] = true
			}
		}
		return &source{est: len(set), cost: 1, set: set, has: func(id string) bool { return set[id] }}
	case c.field == r.t.membersField && r.t.membersField != "":
		users := make([]string, 0, len(c.values))
		for _, v := range c.values {
			u, ok := v.(string)
			if !ok {
				return nil // null: the index cannot answer it
			}
			users = append(users, u)
		}
		return r.membersSource(users)
	case slices.Contains(r.t.eq, c.field):
		terms := make([]eqTerm, 0, len(c.values))
		for _, v := range c.values {
			enc, ok := eqEncOK(v)
			if !ok {
				return nil
			}
			terms = append(terms, eqTerm{c.field, enc})
		}
		return r.eqSource(terms)
	}
	return nil
}

// eqSource is the union of equality lookups; values of kinds the index does
// not type ("?") are always included.
func (r *reader) eqSource(terms []eqTerm) *source {
	var prefixes [][]byte
	seen := map[string]bool{}
	add := func(field string, enc []byte) {
		p := eqPrefix(field, enc)
		if !seen[string(p)] {
			seen[string(p)] = true
			prefixes = append(prefixes, p)
		}
	}
	for _, t := range terms {
		add(t.field, t.enc)
		add(t.field, []byte{'?'})
	}
	est := 0
	for _, p := range prefixes {
		est += int(readUint(r.n.Get(p)))
	}
	return &source{
		est: est, cost: 2 * len(prefixes), collect: 3,
		each: func(yield func(string)) {
			c := r.ix.Cursor()
			for _, p := range prefixes {
				for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
					if id := k[len(p):]; bytes.IndexByte(id, 0) < 0 {
						yield(string(id))
					}
				}
			}
		},
		has: func(id string) bool {
			for _, p := range prefixes {
				if r.ix.Get(append(slices.Clip(p), id...)) != nil {
					return true
				}
			}
			return false
		},
	}
}

// wordSource is the documents one of whose words of field starts with
// prefix. Its size is only known by reading it, up to collectCap.
func (r *reader) wordSource(field, prefix string) *source {
	if prefix == "" {
		return nil // matches every string
	}
	p := wordPrefix(field, cut(prefix))
	var ids map[string]bool
	c := r.ix.Cursor()
	found := map[string]bool{}
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		found[keyID(k)] = true
		if len(found) > collectCap {
			break
		}
	}
	est, cost := len(found), 1
	if est <= collectCap {
		ids = found
	} else {
		cost = 8
	}
	return &source{
		est: est, cost: cost, set: ids,
		has: func(id string) bool {
			if ids != nil {
				return ids[id]
			}
			for _, k := range decodeRefs(r.refs.Get([]byte(id))) {
				if bytes.HasPrefix(k, p) {
					return true
				}
			}
			return false
		},
	}
}

// count is the number of documents in the table.
func (r *reader) count() int {
	return int(readUint(r.meta.Get(countKey(r.t.data))))
}

// sortable reports whether field's sort index can order the table: it
// exists and no document holds a value it cannot order.
func (r *reader) sortable(field string) bool {
	if !r.t.isSorted(field) {
		return false
	}
	p := sortPrefix(field, secOdd)
	k, _ := r.ix.Cursor().Seek(p)
	return k == nil || !bytes.HasPrefix(k, p)
}

// walk visits field's sort index in dir order (present values in dir, then
// missing ones by id), until visit says stop.
func (r *reader) walk(field string, dir int, visit func(sec byte, enc []byte, id string) bool) {
	encLen := timeEncLen
	if field == r.t.idField {
		encLen = 0
	}
	present, missing := sortPrefix(field, secPresent), sortPrefix(field, secMissing)
	c := r.ix.Cursor()
	if dir >= 0 {
		for k, _ := c.Seek(present); k != nil && bytes.HasPrefix(k, present); k, _ = c.Next() {
			if len(k) < len(present)+encLen || !visit(secPresent, k[len(present):len(present)+encLen], string(k[len(present)+encLen:])) {
				return
			}
		}
	} else {
		k, _ := c.Seek(missing)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, present); k, _ = c.Prev() {
			if len(k) < len(present)+encLen || !visit(secPresent, k[len(present):len(present)+encLen], string(k[len(present)+encLen:])) {
				return
			}
		}
	}
	for k, _ := c.Seek(missing); k != nil && bytes.HasPrefix(k, missing); k, _ = c.Next() {
		if !visit(secMissing, nil, string(k[len(missing):])) {
			return
		}
	}
}

// readScope is a superset of the channels cl may read (canRead): nil for
// server-side callers, else the channels cl is a member or the creator of,
// and those of the open-read types.
func readScope(cl caller, openTypes []string) []eqTerm {
	if cl.server {
		return nil
	}
	scope := []eqTerm{{"members", eqEnc(cl.user)}, {"created_by_id", eqEnc(cl.user)}}
	for _, t := range openTypes {
		scope = append(scope, eqTerm{"type", eqEnc(t)})
	}
	return scope
}

// scopeSource is the documents any of terms finds: equality entries, and
// for the members field the members table.
func (r *reader) scopeSource(terms []eqTerm) *source {
	var users []string
	var local []eqTerm
	for _, t := range terms {
		if t.field == r.t.membersField && len(t.enc) > 0 && t.enc[0] == 's' {
			users = append(users, string(t.enc[1:]))
		} else {
			local = append(local, t)
		}
	}
	var srcs []*source
	if len(local) > 0 {
		srcs = append(srcs, r.eqSource(local))
	}
	if len(users) > 0 {
		srcs = append(srcs, r.membersSource(users))
	}
	return union(srcs...)
}

// union is the ids any of srcs yields (each only when every one of them
// can list its ids).
func union(srcs ...*source) *source {
	if len(srcs) == 1 {
		return srcs[0]
	}
	u := &source{}
	for _, s := range srcs {
		u.est += s.est
		u.cost += s.cost
		u.collect = max(u.collect, s.collect)
	}
	u.each = func(yield func(string)) {
		for _, s := range srcs {
			if s.set != nil {
				for id := range s.set {
					yield(id)
				}
			} else {
				s.each(yield)
			}
		}
	}
	u.has = func(id string) bool {
		for _, s := range srcs {
			if s.has(id) {
				return true
			}
		}
		return false
	}
	return u
}

// loader decodes one document (raw is its record) and says whether the
// caller gets it: it exists, the caller may see it and it matches the filter.
type loader func(id string, raw []byte) (filter.Map, bool)

// find returns the page p asks for among t's documents that load accepts.
// scope, if not nil, is a superset of what the caller may see.
func (p parsed) find(tx *bolt.Tx, t *table, scope []eqTerm, load loader) []hit {
	r := newReader(tx, t)
	var srcs []*source
	for _, c := range p.conds {
		if s := r.source(c); s != nil {
			srcs = append(srcs, s)
		}
	}
	if scope != nil {
		srcs = append(srcs, r.scopeSource(scope))
	}
	// The most selective first: as the collected set, or as the first check.
	slices.SortStableFunc(srcs, func(a, b *source) int { return a.est - b.est })
	accept := func(id string) (hit, bool) {
		k := t.dataKey(id)
		if k == "" {
			return hit{}, false
		}
		raw := r.data.Get([]byte(k))
		if raw == nil {
			return hit{}, false
		}
		doc, ok := load(id, raw)
		return hit{key: id, doc: doc}, ok
	}
	field, dir := t.idField, 1
	if len(p.sort) > 0 {
		field, dir = p.sort[0].Field, p.sort[0].Direction
	}
	need := p.offset + p.limit
	sortable := r.sortable(field)

	// Price the plans: fetch (collect the smallest source, read each, sort),
	// order (collect it, order the ids by their sort keys, read them in that
	// order until the page is full), walk the sort index with the collected
	// ids, or walk it checking every source on the index keys. A walk meets
	// the next match about every count/est entries.
	const none = int(^uint(0) >> 1)
	fetch, order, walkCand, walkChecks := none, none, none, none
	if len(srcs) > 0 {
		s0 := srcs[0]
		steps := r.count()
		if s0.est > 0 {
			steps = min(steps, steps/s0.est*need+need)
		}
		if s0.est <= collectCap {
			collect := s0.est * s0.collect
			fetch = collect + s0.est*loadCost
			if sortable {
				order = collect + s0.est*refCost + min(need, s0.est)*loadCost
				walkCand = collect + steps + need*loadCost
			}
		}
		if sortable {
			walkChecks = steps*(1+s0.cost) + need*loadCost
		}
	}
	var cand map[string]bool
	checks := srcs
	collect := func() {
		cand, checks = srcs[0].set, srcs[1:]
		if cand == nil {
			cand = map[string]bool{}
			srcs[0].each(func(id string) { cand[id] = true })
		}
	}
	passes := func(id string) bool {
		for _, s := range checks {
			if !s.has(id) {
				return false
			}
		}
		return true
	}
	idOrder := field == t.idField
	walk := func(budget int) ([]hit, bool) {
		return p.collectHits(idOrder, dir, need, budget, cand, passes, accept, func(visit visitor) { r.walk(field, dir, visit) })
	}
	best := min(fetch, order, walkCand, walkChecks)
	switch {
	case len(srcs) == 0 && sortable:
		hits, _ := walk(-1)
		return p.page(hits)
	case best == none:
		// no index helps: scan below
	case best == walkCand || best == walkChecks:
		// Give up on a walk gone on far longer than priced (the matches
		// may all sit at its far end) if something else is possible.
		budget := -1
		if alt := min(fetch, order); alt < none {
			budget = max(alt, 2*best)
		}
		if best == walkCand {
			collect()
		}
		if hits, ok := walk(budget); ok {
			return p.page(hits)
		}
		if cand == nil {
			collect()
		}
		if order < none {
			hits, _ := p.collectHits(idOrder, dir, need, -1, nil, passes, accept, r.ordered(cand, field, dir))
			return p.page(hits)
		}
	case best == order:
		collect()
		hits, _ := p.collectHits(idOrder, dir, need, -1, nil, passes, accept, r.ordered(cand, field, dir))
		return p.page(hits)
	}
	var hits []hit
	if fetch < none {
		if cand == nil {
			collect()
		}
		for id := range cand {
			if !passes(id) {
				continue
			}
			if h, ok := accept(id); ok {
				hits = append(hits, h)
			}
		}
		return p.page(hits)
	}
	_ = r.data.ForEach(func(k, raw []byte) error {
		id := t.idOf(string(k))
		if !passes(id) {
			return nil
		}
		if doc, ok := load(id, raw); ok {
			hits = append(hits, hit{key: id, doc: doc})
		}
		return nil
	})
	return p.page(hits)
}

// visitor is called with each entry of a sort order: its section, its
// encoded value and its id; it returns false to stop.
type visitor = func(sec byte, enc []byte, id string) bool

// collectHits collects matches along a sort order of the first sort field
// (each; idOrder if that is the unique id) until it has need of them and
// every document tied with the last one on that field (which later sort
// fields or the id may still put first). It gives up (false) once its cost
// passes budget (no limit if negative).
func (p parsed) collectHits(idOrder bool, dir, need, budget int, cand map[string]bool, passes func(string) bool, accept func(string) (hit, bool), each func(visitor)) ([]hit, bool) {
	var hits []hit
	var lastSec byte
	var lastEnc []byte
	cost, gaveUp := 0, false
	each(func(sec byte, enc []byte, id string) bool {
		if len(hits) >= need {
			// Ties on field are in id order only among missing values or
			// ascending ones, and only if field is the sole sort field.
			ties := !idOrder && (len(p.sort) > 1 || (sec == secPresent && dir < 0))
			if !ties || sec != lastSec || !bytes.Equal(enc, lastEnc) {
				return false
			}
		}
		cost++
		if cand != nil && !cand[id] || !passes(id) {
			return true
		}
		cost += loadCost
		if budget >= 0 && cost > budget {
			gaveUp = true
			return false
		}
		if h, ok := accept(id); ok {
			hits = append(hits, h)
			if len(hits) == need {
				lastSec, lastEnc = sec, bytes.Clone(enc)
			}
		}
		return true
	})
	return hits, !gaveUp
}

// ordered is the order of field's sort index restricted to ids, read from
// each id's refs rather than by walking the index.
func (r *reader) ordered(ids map[string]bool, field string, dir int) func(visitor) {
	type item struct {
		sec byte
		enc []byte
		id  string
	}
	items := make([]item, 0, len(ids))
	for id := range ids {
		if sec, enc, ok := r.sortKeyOf(field, id); ok {
			items = append(items, item{sec, enc, id})
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		switch {
		case a.sec != b.sec:
			return int(a.sec) - int(b.sec)
		case field == r.t.idField:
			return strings.Compare(a.id, b.id) * dir
		}
		if c := bytes.Compare(a.enc, b.enc); c != 0 && a.sec == secPresent {
			return c * dir
		}
		return strings.Compare(a.id, b.id)
	})
	return func(visit visitor) {
		for _, it := range items {
			if !visit(it.sec, it.enc, it.id) {
				return
			}
		}
	}
}

// sortKeyOf says where id sits in field's sort index, from its refs.
func (r *reader) sortKeyOf(field, id string) (byte, []byte, bool) {
	if field == r.t.idField {
		return secPresent, nil, true
	}
	p := sortPrefix(field, 0)
	p = p[:len(p)-1] // 's' field 0
	b := r.refs.Get([]byte(id))
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			break
		}
		k := b[w : w+int(n)]
		b = b[w+int(n):]
		if bytes.HasPrefix(k, p) && len(k) > len(p)+len(id) {
			return k[len(p)], k[len(p)+1 : len(k)-len(id)], true
		}
	}
	return 0, nil, false
}
