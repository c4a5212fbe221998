package api

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// The members table indexes the presence_members bucket: one document per
// member key, whose entries answer what is asked of a channel's members
// without reading the others:
//
//	'e' "cid" 0 's' cid 0 key          the channel's members; the count under
//	                                   the value is its member_count
//	'e' "user_id" 0 's' user 0 key     the user's channels: the channels
//	                                   table's members filter and a client's
//	                                   read scope
//	'o' cid 0 user                     the channel's members by user id:
//	                                   membership checks, user_id sorts and
//	                                   cursors
//	'j' cid 0 created_at user          in the order they joined (a 12-byte
//	                                   time): the member page of a channel
//	                                   state, created_at sorts and cursors
//
// Presence (online, last_active) is the users table's: a member query on
// it walks the users' index checking membership key by key (findMembers),
// so a presence change never reindexes the members of a user's channels.
var membersTable = &table{
	name: "members",
	data: store.BucketMembers,
	eq:   []string{"cid", "user_id"},
	// Members are found by their KV key.
	dataKey: func(key string) string { return key },
	idOf:    func(key string) string { return key },
	doc: func(tx *bolt.Tx, key string) (filter.Map, bool) {
		cid, _, ok := store.MemberOf(key)
		raw := tx.Bucket([]byte(store.BucketMembers)).Get([]byte(key))
		var m model.Member
		if !ok || raw == nil || json.Unmarshal(raw, &m) != nil {
			return nil, false
		}
		_, m.UserID, _ = store.MemberOf(key) // the key names the user
		return memberIndexDoc(cid, m), true
	},
	entriesOf: memberEntries,
}

// memberIndexDoc is what the members table indexes of m, a member of cid.
func memberIndexDoc(cid string, m model.Member) filter.Map {
	return filter.Map{"cid": cid, "user_id": m.UserID, "created_at": m.CreatedAt}
}

func memberEntries(key string, doc filter.Map) [][]byte {
	cid, _ := doc["cid"].(string)
	user, _ := doc["user_id"].(string)
	at, _ := doc["created_at"].(time.Time)
	out := [][]byte{
		eqKey("cid", eqEnc(cid), key), eqKey("user_id", eqEnc(user), key),
		append(memberPrefix(kindByID, cid), user...),
		append(append(memberPrefix(kindJoined, cid), timeEnc(at)...), user...),
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// Kinds of the members table's per-channel entries.
const (
	kindByID   = 'o'
	kindJoined = 'j'
)

// memberPrefix starts the entries of kind of channel cid.
func memberPrefix(kind byte, cid string) []byte {
	k := make([]byte, 0, 2+len(cid)+timeEncLen+32)
	k = append(k, kind)
	k = append(k, cid...)
	return append(k, 0)
}

// memberKeyOf is the KV key of user's member record in cid ("" if cid is
// not a valid cid).
func memberKeyOf(cid, user string) string {
	k := cidKey(cid)
	if k == "" {
		return ""
	}
	return k + "." + store.Key(user)
}

// memberReader reads the members table inside a transaction.
type memberReader struct {
	ix, n, data *bolt.Bucket
}

func newMemberReader(tx *bolt.Tx) memberReader {
	return memberReader{
		ix: tx.Bucket(membersTable.ixBucket()), n: tx.Bucket(membersTable.nBucket()),
		data: tx.Bucket([]byte(store.BucketMembers)),
	}
}

// count is cid's member_count.
func (r memberReader) count(cid string) int {
	return int(readUint(r.n.Get(eqPrefix("cid", eqEnc(cid)))))
}

// channelCount is how many channels user is a member of.
func (r memberReader) channelCount(user string) int {
	return int(readUint(r.n.Get(eqPrefix("user_id", eqEnc(user)))))
}

// has reports whether user is a member of cid.
func (r memberReader) has(cid, user string) bool {
	return r.ix.Get(append(memberPrefix(kindByID, cid), user...)) != nil
}

// get reads user's member record in cid.
func (r memberReader) get(cid, user string) (model.Member, bool) {
	var m model.Member
	k := memberKeyOf(cid, user)
	if k == "" {
		return m, false
	}
	raw := r.data.Get([]byte(k))
	if raw == nil || json.Unmarshal(raw, &m) != nil {
		return m, false
	}
	m.UserID = user
	return m, true
}

// users calls yield with cid's members in user id order until it says stop.
func (r memberReader) users(cid string, yield func(user string) bool) {
	walkRange(r.ix.Cursor(), memberPrefix(kindByID, cid), 1, keyRange{}, func(rest []byte) bool {
		return yield(string(rest))
	})
}

// channels calls yield with the cids user is a member of.
func (r memberReader) channels(user string, yield func(cid string) bool) {
	p := eqPrefix("user_id", eqEnc(user))
	c := r.ix.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if cid, _, ok := store.MemberOf(string(k[len(p):])); ok && !yield(cid) {
			return
		}
	}
}

// page is cid's members in the order they joined, from offset, at most limit.
func (r memberReader) page(cid string, offset, limit int) []string {
	var out []string
	i := 0
	walkRange(r.ix.Cursor(), memberPrefix(kindJoined, cid), 1, keyRange{}, func(rest []byte) bool {
		if i++; i > offset && len(rest) > timeEncLen {
			out = append(out, string(rest[timeEncLen:]))
		}
		return len(out) < limit
	})
	return out
}

// keyRange bounds the part after a prefix: its first n bytes (all if n is
// 0) against lo and hi, each inclusive or not; nil is open.
type keyRange struct {
	n              int
	lo, hi         []byte
	loIncl, hiIncl bool
}

// in says where rest lies: below the range (-1), in it (0) or above (1).
func (b keyRange) in(rest []byte) int {
	if b.n > 0 && len(rest) > b.n {
		rest = rest[:b.n]
	}
	if b.lo != nil {
		if c := bytes.Compare(rest, b.lo); c < 0 || c == 0 && !b.loIncl {
			return -1
		}
	}
	if b.hi != nil {
		if c := bytes.Compare(rest, b.hi); c > 0 || c == 0 && !b.hiIncl {
			return 1
		}
	}
	return 0
}

// walkRange visits the keys under prefix whose rest is in b, in dir order,
// until visit says stop. It seeks to the range's start: a cursor walks a
// channel's members from a user id or a time, not from its first member.
func walkRange(c *bolt.Cursor, prefix []byte, dir int, b keyRange, visit func(rest []byte) bool) {
	var k []byte
	if dir >= 0 {
		k, _ = c.Seek(append(slices.Clip(prefix), b.lo...))
	} else {
		// Past the last key of the range: the ids and user ids that follow
		// a bound are printable ASCII, below 0xff.
		end := slices.Clip(prefix[:len(prefix)-1])
		end = append(end, prefix[len(prefix)-1]+1)
		if b.hi != nil {
			end = append(append(slices.Clip(prefix), b.hi...), 0xff)
		}
		if k, _ = c.Seek(end); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k = step(c, dir) {
		rest := k[len(prefix):]
		switch b.in(rest) * dir {
		case -1:
			continue // before the range's start (an exclusive bound)
		case 1:
			return
		}
		if !visit(rest) {
			return
		}
	}
}

func step(c *bolt.Cursor, dir int) []byte {
	var k []byte
	if dir >= 0 {
		k, _ = c.Next()
	} else {
		k, _ = c.Prev()
	}
	return k
}

// membersSource is the channels that any of users is a member of, for the
// channels table's members field.
func (r *reader) membersSource(users []string) *source {
	mr := newMemberReader(r.tx)
	est := 0
	for _, u := range users {
		est += mr.channelCount(u)
	}
	return &source{
		est: est, cost: 2 * len(users), collect: 4,
		each: func(yield func(string)) {
			for _, u := range users {
				mr.channels(u, func(cid string) bool { yield(cid); return true })
			}
		},
		has: func(cid string) bool {
			for _, u := range users {
				if mr.has(cid, u) {
					return true
				}
			}
			return false
		},
	}
}

// memberUserFields are the fields of a member document that are its user's,
// by their names in the users table: a condition on one is answered by the
// users table's indexes. online only finds online users there: a member
// whose user is gone reads offline without being in that index.
var memberUserFields = map[string]string{
	"id": "id", "user_id": "id", "user.id": "id", "name": "name", "user.name": "name",
	"online": "online", "user.online": "online", "user.role": "role", "user.teams": "teams",
}

// memberUserSorts are the member sorts a users sort index orders.
var memberUserSorts = map[string]string{
	"last_active": "last_active", "user.last_active": "last_active",
	"user.created_at": "created_at", "user.updated_at": "updated_at",
}

// memberPlan, if set, is the plan findMembers runs whenever it can
// ("fetch", "own" or "users"), walking to the end if it must: for tests.
var memberPlan string

// memberIDFields are the member fields that hold the user id.
var memberIDFields = []string{"user_id", "id", "user.id"}

// findMembers returns the page p asks for among cid's members that load
// accepts (load gets a user id). It prices three plans, as find does for
// users and channels:
//
//   - fetch: read every candidate of the most selective source (the
//     channel's members, or the users a user condition finds) and sort;
//   - walk the channel's own orders (joining time for created_at, user id
//     for user_id), from the cursor's bound, checking the user conditions
//     on index keys;
//   - walk a users sort index (last_active...) checking membership (one key
//     lookup) and the user conditions: {online: true} by last_active in a
//     10,000-member channel walks the online users' activity (onlineActive)
//     until 30 members are found, instead of reading the channel's 10,000.
//
// The filter is matched on each member's document, so every plan answers
// like reading every member.
func (p parsed) findMembers(tx *bolt.Tx, cid string, load func(user string) (filter.Map, bool)) []hit {
	mr := newMemberReader(tx)
	ur := newReader(tx, usersTable)
	n := mr.count(cid)
	users := float64(max(ur.count(), n, 1))
	member := &source{
		est: n, cost: 1, collect: 1,
		each: func(yield func(string)) { mr.users(cid, func(u string) bool { yield(u); return true }) },
		has:  func(u string) bool { return mr.has(cid, u) },
	}
	var userSrcs []*source
	var online *source // {online: true}, if the filter says so
	for _, c := range p.conds {
		f, ok := memberUserFields[c.field]
		if !ok || f == "online" && slices.ContainsFunc(c.values, func(v any) bool { return v != true }) {
			continue
		}
		if s := ur.source(conjunct{field: f, autocomplete: c.autocomplete, values: c.values}); s != nil {
			userSrcs = append(userSrcs, s)
			if f == "online" {
				online = s
			}
		}
	}
	slices.SortStableFunc(userSrcs, func(a, b *source) int { return a.est - b.est })
	sel := func(srcs []*source) float64 {
		f := 1.0
		for _, s := range srcs {
			f *= min(float64(s.est)/users, 1)
		}
		return f
	}
	costs := func(srcs []*source) int {
		c := 0
		for _, s := range srcs {
			c += s.cost
		}
		return c
	}
	accept := func(u string) (hit, bool) {
		doc, ok := load(u)
		return hit{key: u, doc: doc}, ok
	}
	need := p.offset + p.limit
	steps := func(length int, selectivity float64) int {
		if selectivity <= 0 {
			return length
		}
		return int(min(float64(length), math.Ceil(float64(need)/selectivity)))
	}

	// fetch: the smallest source's ids, checked against the others.
	all := append([]*source{member}, userSrcs...)
	listable := slices.DeleteFunc(slices.Clone(all), func(s *source) bool { return s.set == nil && s.each == nil })
	first := slices.MinFunc(listable, func(a, b *source) int { return a.est - b.est })
	others := slices.DeleteFunc(slices.Clone(all), func(s *source) bool { return s == first })
	fetchLoads := float64(first.est) * sel(others)
	if first == member {
		fetchLoads = float64(n) * sel(userSrcs)
	}
	fetch := first.est*(first.collect+costs(others)) + int(fetchLoads)*loadCost

	const none = math.MaxInt
	field, dir := p.sort[0].Field, p.sort[0].Direction
	ownWalk, ownCost := p.memberOrder(mr, cid, field, dir), none
	if ownWalk != nil {
		ownCost = steps(n, sel(userSrcs))*(1+costs(userSrcs)) + need*loadCost
	}
	userField, byUsers := memberUserSorts[field]
	userCost, userChecks := none, append([]*source{member}, userSrcs...)
	var usersWalk func(visitor)
	switch {
	case byUsers && userField == "last_active" && online != nil:
		// Only online users can match: walk their activity alone.
		userChecks = slices.DeleteFunc(userChecks, func(s *source) bool { return s == online })
		userCost = steps(online.est, float64(n)/users*sel(userChecks[1:]))*(1+costs(userChecks)) + need*loadCost
		usersWalk = func(visit visitor) { ur.walk(onlineActive, dir, visit) }
	case byUsers && ur.sortable(userField):
		userCost = steps(int(users), float64(n)/users*sel(userSrcs))*(1+costs(userChecks)) + need*loadCost
		usersWalk = p.usersOrder(mr, ur, cid, userField, dir)
	}

	budget := max(fetch, 2*min(ownCost, userCost))
	switch {
	case memberPlan == "fetch":
		ownCost, userCost = none, none
	case memberPlan == "own" && ownCost < none:
		fetch, userCost, budget = none, none, -1
	case memberPlan == "users" && userCost < none:
		fetch, ownCost, budget = none, none, -1
	}
	var walk func(visitor)
	var checks []*source
	idOrder := false
	switch best := min(fetch, ownCost, userCost); {
	case best == fetch:
	case best == ownCost:
		walk, checks = ownWalk, userSrcs
		idOrder = slices.Contains(memberIDFields, field)
	default:
		walk, checks = usersWalk, userChecks
	}
	if walk != nil {
		passes := func(u string) bool {
			for _, s := range checks {
				if !s.has(u) {
					return false
				}
			}
			return true
		}
		// A walk gone on far longer than priced (the matches sit at its far
		// end) gives way to the fetch.
		if hits, ok := p.collectHits(idOrder, dir, need, budget, nil, passes, accept, walk); ok {
			return p.page(hits)
		}
	}
	var hits []hit
	collect := func(u string) {
		for _, s := range others {
			if !s.has(u) {
				return
			}
		}
		if h, ok := accept(u); ok {
			hits = append(hits, h)
		}
	}
	if first.set != nil {
		for u := range first.set {
			collect(u)
		}
	} else {
		first.each(collect)
	}
	return p.page(hits)
}

// memberOrder walks cid's members in the order of a member sort field, from
// the bounds the filter sets on it (the cursors), or nil if the field has no
// such order.
func (p parsed) memberOrder(mr memberReader, cid, field string, dir int) func(visitor) {
	switch {
	case field == "created_at":
		b := p.bounds([]string{"created_at"}, timeEncLen, func(v any) []byte {
			t, ok := v.(time.Time)
			if !ok {
				s, _ := v.(string)
				var err error
				if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
					return nil
				}
			}
			return timeEnc(t)
		})
		return func(visit visitor) {
			walkRange(mr.ix.Cursor(), memberPrefix(kindJoined, cid), dir, b, func(rest []byte) bool {
				return len(rest) <= timeEncLen || visit(secPresent, rest[:timeEncLen], string(rest[timeEncLen:]))
			})
		}
	case slices.Contains(memberIDFields, field):
		b := p.bounds(memberIDFields, 0, func(v any) []byte {
			s, ok := v.(string)
			if !ok {
				return nil
			}
			return []byte(s)
		})
		return func(visit visitor) {
			walkRange(mr.ix.Cursor(), memberPrefix(kindByID, cid), dir, b, func(rest []byte) bool {
				return visit(secPresent, nil, string(rest))
			})
		}
	}
	return nil
}

// bounds is the range the top-level conditions of p put on fields (which
// hold one value), encoded by enc (nil: not a bound the index can use).
func (p parsed) bounds(fields []string, n int, enc func(any) []byte) keyRange {
	b := keyRange{n: n}
	for _, c := range p.ranges {
		if !slices.Contains(fields, c.field) {
			continue
		}
		v := enc(c.values[0])
		if v == nil {
			continue
		}
		switch c.op {
		case filter.OpGt, filter.OpGte:
			incl := c.op == filter.OpGte
			if cmp := bytes.Compare(v, b.lo); b.lo == nil || cmp > 0 || cmp == 0 && !incl {
				b.lo, b.loIncl = v, incl
			}
		case filter.OpLt, filter.OpLte:
			incl := c.op == filter.OpLte
			if cmp := bytes.Compare(v, b.hi); b.hi == nil || cmp < 0 || cmp == 0 && !incl {
				b.hi, b.hiIncl = v, incl
			}
		}
	}
	return b
}

// usersOrder walks the users sort index of field, and with it the members
// of cid whose user is gone (no profile, so in the "missing" section, by
// id): every member is visited where a scan would sort it.
func (p parsed) usersOrder(mr memberReader, ur *reader, cid, field string, dir int) func(visitor) {
	return func(visit visitor) {
		var gone []string
		found, stopped := false, false
		// visitGone visits the members without a profile up to id (all if
		// id is ""), in id order.
		visitGone := func(id string) bool {
			if !found {
				found = true
				mr.users(cid, func(u string) bool {
					if ur.data.Get([]byte(store.Key(u))) == nil {
						gone = append(gone, u)
					}
					return true
				})
			}
			for len(gone) > 0 && (id == "" || strings.Compare(gone[0], id) < 0) {
				u := gone[0]
				gone = gone[1:]
				if !visit(secMissing, nil, u) {
					return false
				}
			}
			return true
		}
		ur.walk(field, dir, func(sec byte, enc []byte, id string) bool {
			if sec == secMissing && !visitGone(id) || !visit(sec, enc, id) {
				stopped = true
				return false
			}
			return true
		})
		if !stopped {
			visitGone("")
		}
	}
}
