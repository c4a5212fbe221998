package gateway

import (
	"cmp"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/subject"
)

// relay is the node's watch registry: which connection watches which user or
// channel, one NATS subscription per watched subject however many
// connections share it, and delivery of each event once per connection.
type relay struct {
	nc      *nats.Conn
	log     *slog.Logger
	metrics *metrics
	// in receives every subscribed subject's messages: channel subscriptions
	// cost no goroutine each, so a node can hold one per watched subject.
	in   chan *nats.Msg
	done chan struct{}
	wg   sync.WaitGroup
	// held are events waiting for their predecessor, by dedup key; released
	// gets a key when its hold ends. Both belong to the loop.
	held     map[string][]*nats.Msg
	released chan string

	mu     sync.Mutex
	byUser map[string]map[*conn]struct{}
	byCID  map[string]map[*conn]struct{}
	subs   map[string]*nats.Subscription
	seen   *versions
}

func newRelay(nc *nats.Conn, log *slog.Logger, m *metrics) (*relay, error) {
	r := &relay{
		nc: nc, log: log, metrics: m,
		in:       make(chan *nats.Msg, 65536),
		released: make(chan string, 1024),
		held:     map[string][]*nats.Msg{},
		done:     make(chan struct{}),
		byUser:   map[string]map[*conn]struct{}{},
		byCID:    map[string]map[*conn]struct{}{},
		subs:     map[string]*nats.Subscription{},
		seen:     newVersions(2 * time.Minute),
	}
	r.wg.Add(1)
	go r.loop()
	return r, nil
}

func (r *relay) close() {
	r.mu.Lock()
	for s, sub := range r.subs {
		_ = sub.Unsubscribe()
		delete(r.subs, s)
	}
	r.mu.Unlock()
	close(r.done)
	r.wg.Wait()
}

func (r *relay) loop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.done:
			return
		case msg := <-r.in:
			r.route(msg)
		case key := <-r.released:
			r.flush(key)
		}
	}
}

// holdFor is the longest an event waits for its predecessor. Two workers
// publishing one user's consecutive events race by milliseconds; when the
// predecessor never comes (this node did not watch the user back then), the
// event is only this much late. Generous, because a loaded machine delays
// the slower worker by far more than the race itself takes.
const holdFor = 500 * time.Millisecond

// route delivers an event, unless it names a recent predecessor this node
// has not delivered yet: then it waits (up to holdFor) so the two reach
// watchers in order instead of the older one being dropped as stale (I2).
func (r *relay) route(msg *nats.Msg) {
	m, ok := event.ReadMeta(msg)
	if !ok {
		return
	}
	key := string(m.Stream) + "\x00" + m.User
	if m.Prev != 0 {
		r.mu.Lock()
		last := r.seen.last(key)
		r.mu.Unlock()
		if last < m.Prev {
			if len(r.held[key]) == 0 {
				time.AfterFunc(holdFor, func() { r.release(key) })
			}
			r.held[key] = append(r.held[key], msg)
			return
		}
	}
	r.deliver(msg)
	if m.Version >= r.waitingFor(key) {
		r.flush(key)
	}
}

// waitingFor is the lowest predecessor the events held for key wait for.
func (r *relay) waitingFor(key string) uint64 {
	low := uint64(0)
	for _, h := range r.held[key] {
		if m, ok := event.ReadMeta(h); ok && (low == 0 || m.Prev < low) {
			low = m.Prev
		}
	}
	if low == 0 {
		return ^uint64(0)
	}
	return low
}

// flush delivers the events held for key, oldest version first: held
// events can arrive in any order, and an older one delivered after a newer
// one would be dropped as stale.
func (r *relay) flush(key string) {
	held := r.held[key]
	delete(r.held, key)
	slices.SortStableFunc(held, func(a, b *nats.Msg) int {
		ma, _ := event.ReadMeta(a)
		mb, _ := event.ReadMeta(b)
		return cmp.Compare(ma.Version, mb.Version)
	})
	for _, h := range held {
		r.deliver(h)
	}
}

// release ends a hold (on a timer goroutine): the loop delivers what was
// held.
func (r *relay) release(key string) {
	select {
	case r.released <- key:
	case <-r.done:
	}
}

// deliver sends an event to the connections watching the subject it came
// on, once each: a connection watching several subjects that carry the same
// event (the user and two channels holding them) gets the first copy only,
// and an older version than one already delivered is dropped (I2).
func (r *relay) deliver(msg *nats.Msg) {
	m, ok := event.ReadMeta(msg)
	if !ok {
		return
	}
	user, cid, ok := subject.ParseEvents(msg.Subject)
	if !ok {
		return
	}
	r.mu.Lock()
	sent, fresh := r.seen.deliveries(string(m.Stream)+"\x00"+m.User, m.Version)
	if !fresh {
		r.mu.Unlock()
		return
	}
	watchers := r.byUser[user]
	if cid != "" {
		watchers = r.byCID[cid]
	}
	targets := make([]*conn, 0, len(watchers))
	for c := range watchers {
		if _, dup := sent[c]; !dup {
			sent[c] = struct{}{}
			targets = append(targets, c)
		}
	}
	r.mu.Unlock()
	for _, c := range targets {
		c.enqueue(msg.Data)
	}
	if len(targets) > 0 {
		r.metrics.relayed.Add(float64(len(targets)))
		if !m.At.IsZero() {
			r.metrics.relayLatency.Observe(time.Since(m.At).Seconds())
		}
	}
}

// watched lists the users and channels the node's connections watch.
func (r *relay) watched() (users, cids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	users = make([]string, 0, len(r.byUser))
	for u := range r.byUser {
		users = append(users, u)
	}
	cids = make([]string, 0, len(r.byCID))
	for c := range r.byCID {
		cids = append(cids, c)
	}
	return users, cids
}

// watch adds watches to c; it fails without change if c would exceed max.
func (r *relay) watch(c *conn, users, cids []string, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.dropped {
		return true // closed meanwhile: nothing to watch, and nothing to leak
	}
	if c.users == nil {
		c.users, c.cids = map[string]struct{}{}, map[string]struct{}{}
	}
	if len(c.users)+len(c.cids)+len(users)+len(cids) > max {
		return false
	}
	for _, u := range users {
		r.add(r.byUser, u, subject.UserEvents(u), c, c.users)
	}
	for _, cid := range cids {
		typ, id, _ := strings.Cut(cid, ":")
		r.add(r.byCID, cid, subject.ChannelEvents(typ, id), c, c.cids)
	}
	return true
}

func (r *relay) unwatch(c *conn, users, cids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range users {
		r.remove(r.byUser, u, subject.UserEvents(u), c, c.users)
	}
	for _, cid := range cids {
		typ, id, _ := strings.Cut(cid, ":")
		r.remove(r.byCID, cid, subject.ChannelEvents(typ, id), c, c.cids)
	}
}

// drop removes every watch of a closed connection.
func (r *relay) drop(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.dropped = true
	for u := range c.users {
		r.remove(r.byUser, u, subject.UserEvents(u), c, c.users)
	}
	for cid := range c.cids {
		typ, id, _ := strings.Cut(cid, ":")
		r.remove(r.byCID, cid, subject.ChannelEvents(typ, id), c, c.cids)
	}
}

func (r *relay) add(index map[string]map[*conn]struct{}, key, subj string, c *conn, own map[string]struct{}) {
	if _, ok := own[key]; ok {
		return
	}
	own[key] = struct{}{}
	set := index[key]
	if set == nil {
		set = map[*conn]struct{}{}
		index[key] = set
	}
	set[c] = struct{}{}
	if _, ok := r.subs[subj]; !ok {
		sub, err := r.nc.ChanSubscribe(subj, r.in)
		if err != nil {
			r.log.Error("subscribe", "subject", subj, "err", err)
			return
		}
		r.subs[subj] = sub
	}
}

func (r *relay) remove(index map[string]map[*conn]struct{}, key, subj string, c *conn, own map[string]struct{}) {
	if _, ok := own[key]; !ok {
		return
	}
	delete(own, key)
	set := index[key]
	delete(set, c)
	if len(set) > 0 {
		return
	}
	delete(index, key)
	if sub, ok := r.subs[subj]; ok {
		_ = sub.Unsubscribe()
		delete(r.subs, subj)
	}
}

// versions remembers, per key (stream and user), the latest version seen and
// the connections it was delivered to, in two generations so memory stays
// bounded by recent activity: a key untouched for two periods is forgotten
// (and its next event, being newer, passes anyway).
type versions struct {
	period    time.Duration
	rotated   time.Time
	cur, prev map[string]*delivery
	now       func() time.Time
}

type delivery struct {
	version uint64
	sent    map[*conn]struct{}
}

func newVersions(period time.Duration) *versions {
	return &versions{period: period, rotated: time.Now(), cur: map[string]*delivery{}, prev: map[string]*delivery{}, now: time.Now}
}

// last is the newest version seen for key (0 if none).
func (s *versions) last(key string) uint64 {
	if d, ok := s.cur[key]; ok {
		return d.version
	}
	if d, ok := s.prev[key]; ok {
		return d.version
	}
	return 0
}

// deliveries returns the set of connections version v of key was delivered
// to (empty for a newer version), or fresh=false for an older version.
func (s *versions) deliveries(key string, v uint64) (sent map[*conn]struct{}, fresh bool) {
	if now := s.now(); now.Sub(s.rotated) > s.period {
		s.prev, s.cur, s.rotated = s.cur, map[string]*delivery{}, now
	}
	d, ok := s.cur[key]
	if !ok {
		if d, ok = s.prev[key]; ok {
			s.cur[key] = d
		}
	}
	switch {
	case !ok || v > d.version:
		d = &delivery{version: v, sent: map[*conn]struct{}{}}
		s.cur[key] = d
	case v < d.version:
		return nil, false
	}
	return d.sent, true
}
