package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// churn keeps users connecting and disconnecting steadily while something
// breaks. Each user runs sessions one after another — connect (through the
// gateways in turn), wait until every watcher received the online, hold a
// moment, disconnect, wait until every watcher received the offline, pause
// — so what happened is known exactly: every session is one online and one
// offline, in that order. A transition no watcher receives within
// stepTimeout is lost; anything a watcher receives beyond the expected
// sequence was duplicated.
type churn struct {
	e           *Env
	users       []string
	watchers    []*Watcher
	gateways    []string
	hold        time.Duration // longest hold online / pause offline
	stepTimeout time.Duration
	r           *Result

	stopped atomic.Bool
	mu      sync.Mutex
	steps   []step
	events  map[string]int // events each user should have caused
	online  map[string]*Conn
	lost    int
	// failedConnects counts connects refused or failed (retried).
	failedConnects int
}

// step is one transition: when the client acted and when the last watcher
// received it.
type step struct {
	user   string
	begin  time.Time
	seen   time.Time
	online bool
}

func newChurn(e *Env, r *Result, users []string, watchers []*Watcher, hold, stepTimeout time.Duration) *churn {
	return &churn{
		e: e, r: r, users: users, watchers: watchers, gateways: []string{"gateway-1", "gateway-2"},
		hold: hold, stepTimeout: stepTimeout, events: map[string]int{}, online: map[string]*Conn{},
	}
}

// run starts every user's loop; stop ends them (each finishes its session:
// even users stay connected at the end, odd ones disconnected) and waits.
func (ch *churn) run(ctx context.Context) (stop func()) {
	var wg sync.WaitGroup
	for i, u := range ch.users {
		wg.Go(func() { ch.loop(ctx, i, u) })
	}
	return func() {
		ch.stopped.Store(true)
		wg.Wait()
	}
}

// anomaly reports a transition lost, duplicated or out of order.
func (ch *churn) anomaly(format string, args ...any) {
	ch.r.Violate(format, args...)
}

func (ch *churn) pause() {
	if ch.hold > 0 {
		time.Sleep(mrand.N(ch.hold)) // the client's own pace, not a wait for anything
	}
}

func (ch *churn) loop(ctx context.Context, idx int, user string) {
	keep := idx%2 == 0
	n := 0 // events this user has caused
	for s := 0; ; s++ {
		if ch.stopped.Load() && !keep {
			return
		}
		url := ch.e.C.ConnectURL(ch.gateways[(idx+s)%len(ch.gateways)])
		begin := time.Now()
		c, err := ch.connect(ctx, url, user)
		if err != nil {
			ch.r.Violate("%s: session %d: could not connect within %s: %v", user, s+1, ch.stepTimeout, err)
			return
		}
		n++
		ch.mu.Lock()
		ch.events[user] = n
		ch.mu.Unlock()
		if !ch.await(ctx, user, n, true, begin) {
			c.Drop()
			return
		}
		if ch.stopped.Load() && keep {
			ch.mu.Lock()
			ch.online[user] = c
			ch.mu.Unlock()
			return
		}
		ch.pause()
		begin = time.Now()
		c.Close()
		n++
		ch.mu.Lock()
		ch.events[user] = n
		ch.mu.Unlock()
		if !ch.await(ctx, user, n, false, begin) {
			return
		}
		ch.pause()
	}
}

// connect retries as the SDK does (a connect may fail while the cluster
// recovers) for up to stepTimeout.
func (ch *churn) connect(ctx context.Context, url, user string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, ch.stepTimeout)
	defer cancel()
	for n := 1; ; n++ {
		c, err := Dial(ctx, url, ch.e.Creds, user, nil)
		if err == nil {
			return c, nil
		}
		ch.mu.Lock()
		ch.failedConnects++
		ch.mu.Unlock()
		var ce *ConnectError
		if errors.As(err, &ce) && !ce.Retryable() {
			return nil, err
		}
		t := time.NewTimer(Backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// await waits until every watcher has received the user's n-th event and
// checks it is the expected transition; false ends the user's loop.
func (ch *churn) await(ctx context.Context, user string, n int, online bool, begin time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, ch.stepTimeout)
	defer cancel()
	var seen time.Time
	for _, w := range ch.watchers {
		if err := w.Wait(ctx, func() bool { return w.Len(user) >= n }); err != nil {
			ch.mu.Lock()
			ch.lost++
			ch.mu.Unlock()
			ch.anomaly("%s: the %s of event %d never reached watcher %s (on %s) within %s: lost (received %s)", user, onOff(online), n, w.Name, w.Gateway, ch.stepTimeout, Format(w.Seq(user)))
			return false
		}
		seq := w.Seq(user)
		if seq[n-1].Online != online {
			ch.anomaly("%s: watcher %s (on %s) received %s; event %d should be %s", user, w.Name, w.Gateway, Format(seq), n, onOff(online))
			return false
		}
		if seq[n-1].At.After(seen) {
			seen = seq[n-1].At
		}
	}
	ch.mu.Lock()
	ch.steps = append(ch.steps, step{user: user, begin: begin, seen: seen, online: online})
	ch.mu.Unlock()
	return true
}

// check settles the cluster and compares every watcher's sequences and the
// REST state with what happened; it returns the transitions and the
// duplicated ones.
func (ch *churn) check(ctx context.Context, m *Marker) (transitions, duplicated int, err error) {
	if err := Within(ctx, time.Minute, func(ctx context.Context) error { return ch.e.Settle(ctx, m, ch.watchers) }); err != nil {
		return 0, 0, err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	want := map[string]bool{}
	for _, u := range ch.users {
		n := ch.events[u]
		transitions += n
		want[u] = ch.online[u] != nil
		for _, w := range ch.watchers {
			if got := w.Len(u); got > n {
				duplicated += got - n
			}
			if err := CheckSeq(w, u, Alternating(true, n)); err != nil && w.Len(u) >= n {
				ch.anomaly("%v", err)
			}
			// Whatever happened on the way, every watcher ends where the
			// user is.
			if o, _ := w.Last(u); o != want[u] {
				ch.r.Violate("watcher %s (on %s) is left with %s %s, who is %s", w.Name, w.Gateway, u, onOff(o), onOff(want[u]))
			}
		}
	}
	if err := Within(ctx, 20*time.Second, func(ctx context.Context) error { return ch.e.WaitREST(ctx, "api-2", want) }); err != nil {
		ch.r.Violate("final state: %v", err)
	}
	return transitions, duplicated, nil
}

// closeAll disconnects the users left online.
func (ch *churn) closeAll() {
	ch.mu.Lock()
	conns := slices.Collect(maps.Values(ch.online))
	ch.mu.Unlock()
	DropAll(conns)
}

// recovery says how the workload went on after from: the first
// transition begun after it to reach the watchers (firstNew), by when every
// user had a transition reach them again (allMoving, counting a step stalled
// across from), the longest any step took, and how many users moved at all.
func (ch *churn) recovery(from time.Time) (firstNew, allMoving, longest time.Duration, users int) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	first := map[string]time.Time{}
	firstNew = -1
	for _, s := range ch.steps {
		if !s.seen.After(from) {
			continue
		}
		longest = max(longest, s.seen.Sub(s.begin))
		if s.begin.After(from) && (firstNew < 0 || s.seen.Sub(from) < firstNew) {
			firstNew = s.seen.Sub(from)
		}
		if t, ok := first[s.user]; !ok || s.seen.Before(t) {
			first[s.user] = s.seen
		}
	}
	for _, t := range first {
		allMoving = max(allMoving, t.Sub(from))
	}
	return firstNew, allMoving, longest, len(first)
}

// stepLatency is how long each step begun at or after from and received
// before to took.
func (ch *churn) stepLatency(from, to time.Time) []time.Duration {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var out []time.Duration
	for _, s := range ch.steps {
		if !s.begin.Before(from) && s.seen.Before(to) {
			out = append(out, s.seen.Sub(s.begin))
		}
	}
	return out
}

// WorkerKillParams sizes the worker kill scenario.
type WorkerKillParams struct {
	Users         int
	Before, After time.Duration
	Hold          time.Duration
}

// WorkerKill: users connect and disconnect steadily through both gateways,
// watched from both; worker-1 is killed with SIGKILL mid-stream. No
// transition may be lost or applied twice (I5): every watcher's sequence
// per user is exactly one online and one offline per session, in order, and
// the final REST state is the truth. A message the dead worker held is
// redelivered only when its ack wait (30 s) ends, so some users may stall
// that long: measured.
func WorkerKill(s Size) Scenario {
	p := WorkerKillParams{Users: 20, Before: 3 * time.Second, After: 4 * time.Second, Hold: 150 * time.Millisecond}
	if s == Full {
		p = WorkerKillParams{Users: 300, Before: 10 * time.Second, After: 20 * time.Second, Hold: time.Second}
	}
	return WorkerKillWith(p)
}

// WorkerKillWith is WorkerKill with explicit parameters.
func WorkerKillWith(p WorkerKillParams) Scenario {
	sc := Scenario{Name: "worker-kill", Title: "worker kill -9", Timeout: p.Before + p.After + 3*time.Minute}
	return sc.run(func(ctx context.Context, e *Env, r *Result) error {
		const stepTimeout = 45 * time.Second // the workers' ack wait (30 s) and slack
		r.Setup = fmt.Sprintf("%d users connecting/disconnecting steadily for %s, worker-1 killed, %s more; 2 watchers", p.Users, dur(p.Before), dur(p.After))
		r.Expected = "0 lost, 0 duplicated; final state = truth"
		pop, err := e.Populate(ctx, "wk", p.Users, "wk-watcher-1", "wk-watcher-2")
		if err != nil {
			return err
		}
		ws, err := e.Watchers(ctx, pop, "gateway-1", "gateway-2")
		if err != nil {
			return err
		}
		defer closeWatchers(ws)
		ch := newChurn(e, r, pop.Users, ws, p.Hold, stepTimeout)
		began := time.Now()
		stop := ch.run(ctx)
		defer ch.closeAll()
		time.Sleep(p.Before) // the workload runs meanwhile
		e.Logf("kill -9 worker-1 (pid %d) mid-stream", e.C.Pid("worker-1"))
		killed := time.Now()
		if err := e.C.Kill("worker-1"); err != nil {
			stop()
			return err
		}
		time.Sleep(p.After)
		stop()
		e.Logf("stopped the workload %s after the kill", Dur(time.Since(killed)))
		m := &Marker{User: pop.Marker, Gateway: "gateway-2"}
		defer m.Close()
		transitions, duplicated, err := ch.check(ctx, m)
		if err != nil {
			return err
		}
		if duplicated > 0 {
			r.Violate("%d transitions duplicated", duplicated)
		}
		_, _, longest, _ := ch.recovery(killed)
		before := ch.stepLatency(began, killed)
		r.Measured = fmt.Sprintf("%d lost, %d duplicated of %d transitions (x%d watchers); connect→watcher before the kill %s, longest after %s",
			ch.lost, duplicated, transitions, len(ws), P50Max(before), Dur(longest))
		return nil
	})
}
