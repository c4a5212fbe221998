// Package worker is the presence worker: it consumes connection events from
// JetStream, keeps each user's connection set in KV with compare-and-set,
// decides offline↔online transitions and emits user.presence.changed on the
// user's subject and on each of the user's presence-enabled channels.
//
// Any number of workers share one durable consumer. Correctness never rests on
// there being one: every write is a compare-and-set of the user's whole
// state, and only the write that flips the visible state emits it (I2, I3).
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
	"github.com/presencehq/presence/pkg/ops"
	"github.com/presencehq/presence/pkg/route"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// Worker is one presence worker.
type Worker struct {
	cfg Config
	// id names this run of the worker in the states it writes (EmittedBy).
	id     string
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	st     *store.Store
	router *route.Router

	// rebuiltAt is when the presence state was last (re)created (unix ns).
	rebuiltAt atomic.Int64
	// goneSince is when the periodic check first found the presence bucket
	// deleted (zero: it is there); that check alone uses it (loss.go).
	goneSince time.Time
	// states holds the user states this worker read or wrote last, so most
	// events cost one compare-and-set and no read.
	states *store.Cache
	// profiles and memberships are read through caches kept current by
	// watches: emitting an event costs no read of either.
	profiles    *store.Watched[model.User]
	memberships *store.Watched[model.Memberships]

	recent recentEmits

	epochMu    sync.RWMutex
	epochs     map[string]uint64
	leases     *leases
	heartbeats *nats.Subscription
	// leaseNC and nodes follow the gateways' leases and heartbeats on a
	// connection of their own (see WithLeaseConn).
	leaseNC *nats.Conn
	nodes   jetstream.KeyValue

	// emitFault, set by tests only, fails emits before they read anything.
	emitFault atomic.Pointer[func(user string) error]

	// registry holds the worker's metrics; consumer is the input's
	// consumer, once created (its numbers are read at each scrape).
	registry *prometheus.Registry
	metrics  *metrics
	consumer atomic.Pointer[jetstream.Consumer]
	// ready is set once the worker consumes its input.
	ready     atomic.Bool
	closeOnce sync.Once

	shards  []chan jetstream.Msg
	cc      jetstream.ConsumeContext
	graceCC jetstream.ConsumeContext
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Option adjusts a worker at New.
type Option func(*options)

type options struct {
	leaseConn *nats.Conn
	registry  *prometheus.Registry
}

// WithLeaseConn follows the gateways' leases and heartbeats over a NATS
// connection of their own: the main one carries thousands of input events
// at once, and a heartbeat queued behind them could make a live gateway
// look dead (I4). Run uses it.
func WithLeaseConn(nc *nats.Conn) Option { return func(o *options) { o.leaseConn = nc } }

// WithRegistry registers the worker's metrics on reg (the all-in-one shares
// one among its services). Without it the worker has a registry of its own.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// New starts a worker on nc. Call Close to stop it.
func New(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger, opts ...Option) (*Worker, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := store.Setup(ctx, js, store.Options{Replicas: cfg.Replicas, ActiveInterval: cfg.ActiveInterval, SkipChannelTypes: true})
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: log, nc: nc, js: js, st: st, epochs: map[string]uint64{}, leases: newLeases()}
	w.id = cfg.Name + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	if w.nodes, err = st.NodesOn(ctx, o.leaseConn); err != nil {
		return nil, err
	}
	w.leaseNC = nc
	if o.leaseConn != nil {
		w.leaseNC = o.leaseConn
	}
	w.recent.at = map[string]time.Time{}
	w.states = store.NewCache(stateCacheBytes)
	w.registry = o.registry
	if w.registry == nil {
		w.registry = ops.NewRegistry()
	}
	w.metrics = newMetrics(w.registry, w)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Worker, error) {
		w.cancel()
		w.wg.Wait()
		return nil, err
	}
	if w.router, err = route.New(w.ctx, st); err != nil {
		return fail(err)
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); <-w.router.Stopped() }()
	if w.profiles, err = store.NewWatched[model.User](w.ctx, st.Users, watchedKeys); err != nil {
		return fail(err)
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); <-w.profiles.Stopped() }()
	if w.memberships, err = store.NewWatched[model.Memberships](w.ctx, st.Memberships, watchedKeys); err != nil {
		return fail(err)
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); <-w.memberships.Stopped() }()
	if err := w.followNodes(ctx); err != nil {
		return fail(err)
	}
	if err := w.followHeartbeats(); err != nil {
		return fail(err)
	}
	w.wg.Add(2)
	go w.expireLeases()
	go w.watchForLoss()
	if err := w.serveResync(); err != nil {
		return fail(err)
	}
	// Two consumers share the shards: one for input applied as it comes, one
	// for closes held for a grace period (in a stream of their own). Held
	// closes wait unacked until their grace ends; apart, they never use up
	// the first consumer's MaxAckPending and stall everyone else.
	now, err := js.CreateOrUpdateConsumer(ctx, store.StreamInput, jetstream.ConsumerConfig{
		Durable:       store.ConsumerWorkers,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: cfg.MaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fail(fmt.Errorf("worker: consumer: %w", err))
	}
	w.consumer.Store(&now)
	held, err := js.CreateOrUpdateConsumer(ctx, store.StreamGrace, jetstream.ConsumerConfig{
		Durable:       store.ConsumerGrace,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1 << 20, // a whole drained node's connections at once
		MaxDeliver:    -1,
	})
	if err != nil {
		return fail(fmt.Errorf("worker: grace consumer: %w", err))
	}
	w.shards = make([]chan jetstream.Msg, cfg.Shards)
	for i := range w.shards {
		w.shards[i] = make(chan jetstream.Msg, 256)
		w.wg.Add(1)
		go w.runShard(w.shards[i])
	}
	closeShards := func() {
		for _, s := range w.shards {
			close(s)
		}
	}
	if w.cc, err = now.Consume(w.dispatch, jetstream.PullMaxMessages(1000)); err != nil {
		closeShards()
		return fail(fmt.Errorf("worker: consume: %w", err))
	}
	if w.graceCC, err = held.Consume(w.dispatch, jetstream.PullMaxMessages(1000)); err != nil {
		w.cc.Stop()
		closeShards()
		return fail(fmt.Errorf("worker: consume held closes: %w", err))
	}
	w.ready.Store(true)
	log.Info("worker started", "shards", cfg.Shards)
	return w, nil
}

// Close stops consuming, finishes the events in hand and returns. Unacked
// events are redelivered to another worker. Calling it again does nothing.
func (w *Worker) Close() { w.closeOnce.Do(w.close) }

func (w *Worker) close() {
	w.ready.Store(false)
	w.cc.Drain()
	w.graceCC.Drain()
	<-w.cc.Closed()
	<-w.graceCC.Closed()
	for _, s := range w.shards {
		close(s)
	}
	w.cancel()
	w.wg.Wait()
	w.log.Info("worker stopped")
}

// Run connects to NATS and works until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	nc, err := natsconn.Connect(cfg.NATSURL, "presence-worker "+cfg.Name, log, natsconn.As(natsauth.Worker, cfg.NATSUser, cfg.NATSPassword))
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer nc.Drain()
	lnc, err := natsconn.Connect(cfg.NATSURL, "presence-worker "+cfg.Name+" leases", log, natsconn.As(natsauth.Worker, cfg.NATSUser, cfg.NATSPassword))
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer lnc.Drain()
	w, err := New(ctx, cfg, nc, log, WithLeaseConn(lnc))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		w.Close()
		return fmt.Errorf("worker: %w", err)
	}
	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	w.log.Info("listening", "http", ln.Addr().String())
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Not ready from here: the orchestrator stops counting on this worker
	// while it finishes the events in hand.
	w.ready.Store(false)
	w.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return err
}

// Handler serves /metrics, /healthz and /readyz (see NotReady).
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	ops.Handle(mux, w.registry, w.NotReady)
	return mux
}

// NotReady says why the worker is not doing its work (it is stopping, or
// NATS is not connected), or "" when it is: consuming its input, with
// every stream and bucket set up.
func (w *Worker) NotReady() string {
	switch {
	case !w.ready.Load():
		return "stopping"
	case !w.nc.IsConnected():
		return "not connected to NATS"
	}
	return ""
}

// dispatch hands a message to the shard of its user (or node): every input
// subject ends with that id, so one user's events are applied in order
// within this worker.
func (w *Worker) dispatch(msg jetstream.Msg) {
	subj := msg.Subject()
	h := fnv.New32a()
	h.Write([]byte(subj[strings.LastIndexByte(subj, '.')+1:]))
	w.shards[int(h.Sum32()%uint32(len(w.shards)))] <- msg
}

func (w *Worker) runShard(in chan jetstream.Msg) {
	defer w.wg.Done()
	for msg := range in {
		w.handle(msg)
	}
}

func (w *Worker) handle(msg jetstream.Msg) {
	ev, err := connevent.Decode(msg.Data())
	if err != nil {
		w.log.Warn("dropping malformed input", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	// A request lost with a dying NATS server is given up after this and
	// the event retried (redelivered: it re-emits what it may have written).
	ctx, cancel := context.WithTimeout(w.ctx, applyTimeout)
	defer cancel()
	if wait := w.graceLeft(ev); wait > 0 {
		if !subject.IsGraceClose(msg.Subject()) {
			w.hold(msg, ev)
			return
		}
		// Not yet: JetStream hands it back when the grace has passed, and a
		// reconnect arriving meanwhile keeps the user online.
		_ = msg.NakWithDelay(wait)
		return
	}
	again := redelivered(msg)
	if again {
		w.metrics.redeliveries.Inc()
	}
	began := time.Now()
	if ev.Kind == connevent.NodeStarted || ev.Kind == connevent.NodeExpired {
		err = w.nodeGone(ev, again, func() { _ = msg.InProgress() })
	} else {
		err = w.applyEvent(ctx, ev, again)
	}
	if err != nil {
		if w.ctx.Err() == nil {
			w.log.Warn("event failed, will retry", "subject", msg.Subject(), "err", err)
		}
		retry := time.Second
		if ev.Kind == connevent.NodeStarted || ev.Kind == connevent.NodeExpired {
			// A sweep races the lease's deadline (I4): retry it soon.
			retry = 100 * time.Millisecond
		}
		_ = msg.NakWithDelay(retry)
		return
	}
	w.metrics.applied(ev.Kind, time.Since(began))
	_ = msg.Ack()
}

// stateCacheBytes bounds the states a worker remembers: a few hundred bytes
// a user, so some 100,000 users' states.
const stateCacheBytes = 32 << 20

// watchedKeys bounds the profiles and the memberships a worker caches.
const watchedKeys = 100_000

// applyTimeout bounds applying one event: a few JetStream round trips,
// which take milliseconds unless a server died under them.
const applyTimeout = 5 * time.Second

// hold moves a close that must wait out a grace to the held-closes consumer.
func (w *Worker) hold(msg jetstream.Msg, ev connevent.Event) {
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	_, err := w.js.Publish(ctx, subject.GraceClose(ev.Node, ev.User), msg.Data(), jetstream.WithMsgID("grace:"+ev.ConnID))
	if err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

// graceLeft is how long a Closed event must still wait.
func (w *Worker) graceLeft(ev connevent.Event) time.Duration {
	if ev.Kind != connevent.Closed {
		return 0
	}
	grace := max(ev.Grace, w.cfg.OfflineGrace)
	return time.Until(ev.At.Add(grace))
}

func redelivered(msg jetstream.Msg) bool {
	md, err := msg.Metadata()
	return err == nil && md.NumDelivered > 1
}

// applyEvent applies a connection or visibility event to the user's state and
// emits the transition if this write made one.
func (w *Worker) applyEvent(ctx context.Context, ev connevent.Event, redelivery bool) error {
	if err := subject.CheckUserID(ev.User); err != nil {
		return nil // nothing valid to apply; the gateway never sends this
	}
	var transition bool
	var seeded *connevent.Event
	var pred *model.Presence
	p, _, wrote, err := store.UpdateCached(ctx, w.st.Presence, store.Key(ev.User), w.states, func(p *model.Presence, exists bool) error {
		pred = nil
		if p.Version != 0 && p.EmittedBy != w.id && time.Since(writtenAt(*p)) < predecessorWindow {
			// Another worker wrote the last event moments ago and may not
			// have published it yet: publish it again before ours.
			c := clonePresence(*p)
			pred = &c
		}
		if !exists && (ev.Kind == connevent.Opened || ev.Kind == connevent.Active) {
			// A fresh state (a first connect, or one rebuilt after the bucket
			// was lost) starts from the profile's invisible flag as it is
			// now, not as it was when the connection opened.
			if seeded == nil {
				vis, err := w.profileVisibility(ctx, ev.User)
				if err != nil {
					return err
				}
				seeded = &vis
			}
			apply(p, *seeded, w.epochOf)
		}
		changed, t := apply(p, ev, w.epochOf)
		lost := false
		if !exists && !t {
			var err error
			if lost, err = w.stateLost(ctx); err != nil {
				return err
			}
		}
		if lost {
			// The state was lost moments ago: tell watchers where this user
			// stands now, whatever the lost state had told them.
			p.Version = nextVersion(p.Version, ev.At)
			p.LastEvent, p.LastEventAt = presenceChanged, ev.At
			changed, t = true, true
		}
		transition = t
		if t {
			// The race windows (predecessorWindow, racingWindow) count from
			// this write, not from when the connection event happened: in a
			// backlog (a storm's delayed closes) that is long before, and the
			// event just written can still race its successor.
			p.EmittedBy, p.WrittenAt = w.id, time.Now().UTC()
		}
		if !changed {
			return store.ErrUnchanged
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wrote && transition {
		if p.Visible() {
			w.metrics.online.Inc()
		} else {
			w.metrics.offline.Inc()
		}
	}
	switch {
	case wrote && transition:
		return w.emitWritten(ev.User, p, pred)
	case redelivery && p.Version > 0:
		// We may have written the transition and died before emitting it:
		// emit the current one again; gateways drop the duplicate (I2, I5).
		return w.emit(ctx, ev.User, p, nil)
	}
	return nil
}

// emitWritten emits the transition this worker has just written, trying
// again until it is out (or the worker stops). It must go out before this
// user's next event is applied: a redelivery would find the state moved on
// and emit only the newest, and watchers would miss this one (two "online"
// in a row where an "offline" was between).
func (w *Worker) emitWritten(user string, p model.Presence, pred *model.Presence) error {
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(w.ctx, applyTimeout)
		err := w.emit(ctx, user, p, pred)
		cancel()
		if err == nil || w.ctx.Err() != nil {
			return err
		}
		w.log.Warn("emitting a written transition failed, trying again", "user", user, "version", p.Version, "err", err)
		select {
		case <-w.ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// profileVisibility reads the user's invisible flag as a Visibility event.
func (w *Worker) profileVisibility(ctx context.Context, user string) (connevent.Event, error) {
	u, rev, err := store.Get[model.User](ctx, w.st.Users, store.Key(user))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return connevent.Event{}, err
	}
	return connevent.Event{Kind: connevent.Visibility, User: user, Invisible: u.Invisible, ProfileRev: rev, At: time.Now().UTC()}, nil
}

// emit publishes the event p's current version stands for:
// user.presence.changed or user.updated, with the user as others see them;
// first pred's, when another worker's event came just before it.
func (w *Worker) emit(ctx context.Context, user string, p model.Presence, pred *model.Presence) error {
	if fault := w.emitFault.Load(); fault != nil {
		if err := (*fault)(user); err != nil {
			return err
		}
	}
	profile, err := w.profile(ctx, user, p)
	if err != nil {
		return err
	}
	ms, _, _, err := w.memberships.Get(ctx, store.Key(user))
	if err != nil {
		return err
	}
	cids := w.router.PresenceChannels(ms)
	w.recent.note(user)
	now := time.Now().UTC()
	if pred != nil {
		if err := w.publish(user, profile, *pred, pred.LastEvent, pred.Version, recentPrev(*pred, now), cids, now); err != nil {
			return err
		}
	}
	return w.publish(user, profile, p, p.LastEvent, p.Version, recentPrev(p, now), cids, now)
}

// profile is user's profile as of p at least: the cached one, unless p has
// seen a newer revision than the cache (its watch is behind).
func (w *Worker) profile(ctx context.Context, user string, p model.Presence) (model.User, error) {
	u, rev, found, err := w.profiles.Get(ctx, store.Key(user))
	if err == nil && rev < max(p.ProfileRev, p.InvisibleRev) {
		u, _, err = store.Get[model.User](ctx, w.st.Users, store.Key(user))
		found = err == nil
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		return model.User{}, err
	}
	if !found {
		return model.User{ID: user, Role: "user"}, nil
	}
	return u, nil
}

// recentPrev is the version of the event before p's, if it is recent
// enough to be still in flight from another worker: the event names it so
// gateways can wait for it.
func recentPrev(p model.Presence, now time.Time) uint64 {
	if p.PrevVersion != 0 && now.Sub(p.PrevAt) < racingWindow {
		return p.PrevVersion
	}
	return 0
}

// racingWindow is how recent a user's previous event must be for its
// successor to name it: two workers publishing one user's consecutive events
// race only within milliseconds.
const racingWindow = time.Second

// predecessorWindow is how recent another worker's event must be for the
// next one's worker to publish it again. Cheap (an event more, in a race
// only), so generous: a loaded worker can publish seconds after its write.
const predecessorWindow = 10 * time.Second

func (w *Worker) publish(user string, profile model.User, p model.Presence, typ string, version, prev uint64, cids []string, now time.Time) error {
	if typ == "" {
		typ = presenceChanged
	}
	view := model.View(profile, p, model.Other)
	ev := event.Event{Type: typ, User: view, CreatedAt: now}
	meta := event.Meta{User: user, Stream: event.StreamPresence, Version: version, Prev: prev, CIDs: cids}
	if typ == presenceChanged {
		meta.At = p.LastEventAt // what gateways measure their relay latency from
	}
	return event.Publish(w.nc, meta, ev.Encode())
}

func (w *Worker) epochOf(node string) uint64 {
	w.epochMu.RLock()
	defer w.epochMu.RUnlock()
	return w.epochs[node]
}

func (w *Worker) learnEpoch(node string, epoch uint64) {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	if epoch > w.epochs[node] {
		w.epochs[node] = epoch
	}
}

// followNodes keeps the known epoch and lease of every gateway node current.
func (w *Worker) followNodes(ctx context.Context) error {
	stopped, err := store.Follow(w.ctx, w.nodes, func(e jetstream.KeyValueEntry) {
		var l model.Lease
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &l) != nil {
			return
		}
		w.learnEpoch(e.Key(), l.Epoch)
		w.leases.seen(e.Key(), l, e.Revision())
		if l.Expired {
			w.learnEpoch(e.Key(), l.Epoch+1)
			w.announceExpiry(e.Key(), l)
		}
	})
	if err != nil {
		return err
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); <-stopped }()
	return nil
}
