package load

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// FanoutParams sizes one process's share of a fanout: Watchers sockets
// watch Channels channels (in turn), each holding Target and its watchers.
type FanoutParams struct {
	Target   string
	Watchers int
	Channels int
	Prefix   string
}

// FanoutChannels is the membership: channel id -> members, Target first.
func FanoutChannels(p FanoutParams) map[string][]string {
	chs := map[string][]string{}
	for j := range p.Channels {
		chs[fanoutChannel(p, j)] = []string{p.Target}
	}
	for i := range p.Watchers {
		ch := fanoutChannel(p, i%p.Channels)
		chs[ch] = append(chs[ch], fanoutWatcher(p, i))
	}
	return chs
}

// FanoutChannelIDs are the channel ids of p, the ones Target belongs to.
func FanoutChannelIDs(p FanoutParams) []string {
	ids := make([]string, p.Channels)
	for j := range ids {
		ids[j] = fanoutChannel(p, j)
	}
	return ids
}

func fanoutChannel(p FanoutParams, j int) string { return fmt.Sprintf("%s-ch-%04d", p.Prefix, j) }
func fanoutWatcher(p FanoutParams, i int) string { return fmt.Sprintf("%s-w-%06d", p.Prefix, i) }

// Fanout is a fleet of watchers of one user, counting, round by round, the
// watchers that have seen its change.
type Fanout struct {
	target string
	mu     sync.Mutex
	round  int
	online bool
	seen   []int // round each watcher last saw the change in
	want   int   // watchers connected
	count  int
	last   time.Time
	all    chan struct{} // closed when every watcher has this round's change
}

// FanoutRound is what one round reached.
type FanoutRound struct {
	Received     int   `json:"received"`
	Of           int   `json:"of"`
	LastUnixNano int64 `json:"last_unix_ns"`
}

// StartFanout creates the channels (Setup) and connects the watchers into
// pool, concurrency at once.
func StartFanout(ctx context.Context, sys System, pool *Pool, p FanoutParams, concurrency int) (*Fanout, Connected, error) {
	chs := FanoutChannels(p)
	if err := sys.Setup(ctx, chs); err != nil {
		return nil, Connected{}, err
	}
	f := &Fanout{target: p.Target, seen: make([]int, p.Watchers), all: make(chan struct{})}
	users := make([]string, p.Watchers)
	for i := range users {
		users[i] = fanoutWatcher(p, i)
	}
	got := ConnectAll(ctx, pool, func(ctx context.Context, i int, user string) (Socket, error) {
		return sys.Watch(ctx, i, user, []string{fanoutChannel(p, i%p.Channels)}, func(c Change) { f.saw(i, c) })
	}, users, concurrency)
	f.mu.Lock()
	f.want = got.Conns
	f.mu.Unlock()
	return f, got, nil
}

func (f *Fanout) saw(i int, c Change) {
	if c.User != f.target {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.round == 0 || c.Online != f.online || f.seen[i] == f.round {
		return
	}
	f.seen[i] = f.round
	f.count++
	f.last = c.At
	if f.count == f.want {
		close(f.all)
	}
}

// Arm starts a round: the next change to count is Target going online (or
// offline).
func (f *Fanout) Arm(online bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.round++
	f.online = online
	f.count = 0
	f.last = time.Time{}
	f.all = make(chan struct{})
}

// Wait waits until every watcher has seen this round's change, or timeout.
func (f *Fanout) Wait(ctx context.Context, timeout time.Duration) FanoutRound {
	f.mu.Lock()
	all := f.all
	f.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-all:
	case <-t.C:
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := FanoutRound{Received: f.count, Of: f.want}
	if !f.last.IsZero() {
		r.LastUnixNano = f.last.UnixNano()
	}
	return r
}
