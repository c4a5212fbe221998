package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/cluster"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/store"
)

// Env is a running cluster as the scenarios see it: its nodes, the
// credentials clients use, and a NATS connection for looking at JetStream
// directly (KV state, consumer progress).
type Env struct {
	C     *cluster.Cluster
	Creds Creds
	// Logf reports progress (t.Logf in tests).
	Logf func(format string, args ...any)

	mu sync.Mutex
	nc *nats.Conn
	js jetstream.JetStream
}

// NewEnv wraps a running cluster.
func NewEnv(c *cluster.Cluster, creds Creds, logf func(string, ...any)) *Env {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Env{C: c, Creds: creds, Logf: logf}
}

// Close closes the NATS connection, if one was opened.
func (e *Env) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.nc != nil {
		e.nc.Close()
		e.nc = nil
	}
}

// REST calls api node name.
func (e *Env) REST(name string) *REST { return NewREST(e.C.URL(name), e.Creds) }

// JetStream connects to the cluster's NATS (every node, reconnecting) once.
func (e *Env) JetStream() (jetstream.JetStream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.js != nil {
		return e.js, nil
	}
	nc, err := nats.Connect(e.C.NATSURLAs(natsauth.Admin), nats.Name("presence-chaos"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	e.nc, e.js = nc, js
	return js, nil
}

// Presence reads user's presence state straight from KV (ok=false: no
// state, or no bucket).
func (e *Env) Presence(ctx context.Context, user string) (p model.Presence, ok bool, err error) {
	m, err := e.Presences(ctx, []string{user})
	if err != nil {
		return p, false, err
	}
	p, ok = m[user]
	return p, ok, nil
}

// Presences reads users' presence states straight from KV, 16 at a time;
// users without a state (or with no bucket at all) are absent.
func (e *Env) Presences(ctx context.Context, users []string) (map[string]model.Presence, error) {
	out := map[string]model.Presence{}
	js, err := e.JetStream()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, store.BucketPresence)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p, _, err := store.Get[model.Presence](ctx, kv, store.Key(u))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				out[u] = p
			case !errors.Is(err, store.ErrNotFound):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Lease reads gateway node's lease from KV.
func (e *Env) Lease(ctx context.Context, node string) (model.Lease, error) {
	js, err := e.JetStream()
	if err != nil {
		return model.Lease{}, err
	}
	kv, err := js.KeyValue(ctx, store.BucketNodes)
	if err != nil {
		return model.Lease{}, err
	}
	l, _, err := store.Get[model.Lease](ctx, kv, node)
	return l, err
}

// Idle says whether the workers have nothing left to do: both consumers
// (input and held closes) have no message waiting and none unacknowledged (a
// message handed to a killed worker counts until it is redelivered and
// acknowledged).
func (e *Env) Idle(ctx context.Context) (bool, error) {
	js, err := e.JetStream()
	if err != nil {
		return false, err
	}
	for _, c := range []struct{ stream, name string }{
		{store.StreamInput, store.ConsumerWorkers}, {store.StreamGrace, store.ConsumerGrace},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.name)
		if err != nil {
			return false, err
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		if ci.NumPending > 0 || ci.NumAckPending > 0 {
			return false, nil
		}
	}
	return true, nil
}

// StreamLeader is the NATS node leading the workers' input stream.
func (e *Env) StreamLeader(ctx context.Context) (string, error) {
	js, err := e.JetStream()
	if err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, store.StreamInput)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("the input stream has no leader")
	}
	return info.Cluster.Leader, nil
}

// Poll checks cond every `every` until it holds, fails, or ctx ends (the
// error then carries cond's last complaint).
func Poll(ctx context.Context, every time.Duration, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Within runs f with a context that ends after d.
func Within(ctx context.Context, d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// Population is a scenario's users: they exist, and they sit in channels
// (at most 2000 members each) together with the
// watchers and a marker user.
type Population struct {
	Users    []string
	CIDs     []string
	Watchers []string
	// Marker is a member of every channel, whose transitions serve as a
	// barrier: see Settle.
	Marker string
}

// Populate creates n users named prefix-u00000… and the channels holding
// them, the watcher users and the marker.
func (e *Env) Populate(ctx context.Context, prefix string, n int, watchers ...string) (*Population, error) {
	p := &Population{Watchers: watchers, Marker: prefix + "-marker"}
	for i := range n {
		p.Users = append(p.Users, fmt.Sprintf("%s-u%05d", prefix, i))
	}
	api := e.REST("api-1")
	extra := append([]string{p.Marker}, watchers...)
	if err := api.UpsertUsers(ctx, append(extra, p.Users...)); err != nil {
		return nil, err
	}
	per := 2000 - len(extra)
	for i := 0; i < n; i += per {
		id := fmt.Sprintf("chaos-%s-%d", prefix, i/per)
		members := append(append([]string{}, extra...), p.Users[i:min(i+per, n)]...)
		if err := api.CreateChannel(ctx, "messaging", id, watchers[0], members); err != nil {
			return nil, err
		}
		p.CIDs = append(p.CIDs, "messaging:"+id)
	}
	return p, nil
}

// Watchers connects one watcher per gateway of gateways, each watching
// every channel of the population.
func (e *Env) Watchers(ctx context.Context, p *Population, gateways ...string) ([]*Watcher, error) {
	var out []*Watcher
	for i, g := range gateways {
		api := "api-1"
		if i%2 == 1 {
			api = "api-2"
		}
		w, err := e.NewWatcher(ctx, p.Watchers[i], g, api, p.CIDs)
		if err != nil {
			for _, w := range out {
				w.Close()
			}
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// DialAll connects each user once to the /connect URL urlOf(i, user)
// returns, 32 at a time; a refused connect the SDK would retry (rate limit)
// is retried with the SDK's backoff.
func (e *Env) DialAll(ctx context.Context, users []string, urlOf func(i int, user string) string) ([]*Conn, error) {
	conns := make([]*Conn, len(users))
	errs := make([]error, len(users))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			conns[i], errs[i] = DialRetry(ctx, urlOf(i, u), e.Creds, u, nil)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Drop()
			}
		}
		return nil, err
	}
	return conns, nil
}

// DialRetry connects like Dial, retrying what the SDK retries (a retryable
// error frame, a socket that failed) with its backoff until ctx ends.
func DialRetry(ctx context.Context, connectURL string, creds Creds, user string, onEvent func(Event)) (*Conn, error) {
	for n := 1; ; n++ {
		c, err := Dial(ctx, connectURL, creds, user, onEvent)
		if err == nil {
			return c, nil
		}
		var ce *ConnectError
		if errors.As(err, &ce) && !ce.Retryable() {
			return nil, err
		}
		t := time.NewTimer(Backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect %s: %w (last: %v)", user, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// CloseAll closes every socket of conns (1000), concurrently.
func CloseAll(conns []*Conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		if c != nil {
			wg.Go(c.Close)
		}
	}
	wg.Wait()
}

// DropAll drops every socket of conns, concurrently.
func DropAll(conns []*Conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		if c != nil {
			wg.Go(c.Drop)
		}
	}
	wg.Wait()
}

// Marker is the population's marker user, connected to one gateway. Each
// Flip connects or disconnects it and waits until every watcher has the
// transition: since one user's events and those of any other member of the
// same channel travel through the same subjects, every transition a worker
// emitted before the marker's reached the watchers before it.
type Marker struct {
	User    string
	Gateway string
	conn    *Conn
}

// Settle waits until the workers are idle (Idle), then flips the marker
// and waits for every watcher to receive it: whatever the cluster was going
// to tell the watchers about what happened before, they have heard.
func (e *Env) Settle(ctx context.Context, m *Marker, watchers []*Watcher) error {
	if err := Poll(ctx, 100*time.Millisecond, func() (bool, error) { return e.Idle(ctx) }); err != nil {
		return fmt.Errorf("workers not idle: %w", err)
	}
	want := make([]int, len(watchers))
	for i, w := range watchers {
		want[i] = w.Len(m.User) + 1
	}
	online := m.conn == nil
	if online {
		c, err := DialRetry(ctx, e.C.ConnectURL(m.Gateway), e.Creds, m.User, nil)
		if err != nil {
			return fmt.Errorf("marker: %w", err)
		}
		m.conn = c
	} else {
		m.conn.Close()
		m.conn = nil
	}
	for i, w := range watchers {
		err := w.Wait(ctx, func() bool { return w.Len(m.User) >= want[i] })
		if err != nil {
			return fmt.Errorf("marker %s %s not received by watcher %s: %w", m.User, onOff(online), w.Name, err)
		}
		if seq := w.Seq(m.User); seq[want[i]-1].Online != online {
			return fmt.Errorf("marker: watcher %s received %s, want it ending %s", w.Name, Format(seq), onOff(online))
		}
	}
	return nil
}

// Close disconnects the marker.
func (m *Marker) Close() {
	if m.conn != nil {
		m.conn.Drop()
		m.conn = nil
	}
}

// RESTDiff compares what api node says of users with want; it returns the
// users that differ, each with what REST said ("online", "offline",
// "missing").
func (e *Env) RESTDiff(ctx context.Context, api string, want map[string]bool) (map[string]string, error) {
	ids := make([]string, 0, len(want))
	for u := range want {
		ids = append(ids, u)
	}
	slices.Sort(ids)
	got, err := e.REST(api).Online(ctx, ids)
	if err != nil {
		return nil, err
	}
	bad := map[string]string{}
	for _, u := range ids {
		g, ok := got[u]
		switch {
		case !ok:
			bad[u] = "missing"
		case g != want[u]:
			bad[u] = onOff(g)
		}
	}
	return bad, nil
}

// WaitREST waits until api node says of users what want says; on timeout
// the error lists the users that still differ.
func (e *Env) WaitREST(ctx context.Context, api string, want map[string]bool) error {
	var bad map[string]string // the last answer's differences
	err := Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		diff, err := e.RESTDiff(ctx, api, want)
		if err != nil {
			return false, err
		}
		bad = diff
		return len(bad) == 0, nil
	})
	if err != nil && len(bad) > 0 {
		return fmt.Errorf("%s disagrees for %d users (%s)", api, len(bad), describe(bad, want))
	}
	return err
}

// describe lists a few users of a RESTDiff: "u1 reads online (want offline)".
func describe(bad map[string]string, want map[string]bool) string {
	var list []string
	for _, u := range slices.Sorted(maps.Keys(bad)) {
		list = append(list, fmt.Sprintf("%s reads %s (want %s)", u, bad[u], onOff(want[u])))
	}
	return summarize(list)
}

func summarize(list []string) string {
	if len(list) > 5 {
		return strings.Join(list[:5], "; ") + fmt.Sprintf("; … %d more", len(list)-5)
	}
	return strings.Join(list, "; ")
}
