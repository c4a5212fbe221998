package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Seen is one user.presence.changed a watcher received.
type Seen struct {
	Online bool
	At     time.Time
}

// Watcher is a user's socket watching channels with presence: it records,
// per user, every user.presence.changed it receives, in order.
type Watcher struct {
	Name    string // the watching user
	Gateway string // the node its socket is on
	conn    *Conn

	mu     sync.Mutex
	seqs   map[string][]Seen
	notify chan struct{}
}

// NewWatcher connects user to gateway and watches every channel of cids
// with presence, through api node api (REST with the socket's
// connection_id, as the SDK's channel.watch({presence: true}) does).
func (e *Env) NewWatcher(ctx context.Context, user, gateway, api string, cids []string) (*Watcher, error) {
	w := &Watcher{Name: user, Gateway: gateway, seqs: map[string][]Seen{}, notify: make(chan struct{})}
	c, err := Dial(ctx, e.C.ConnectURL(gateway), e.Creds, user, w.onEvent)
	if err != nil {
		return nil, fmt.Errorf("watcher %s: %w", user, err)
	}
	w.conn = c
	for _, cid := range cids {
		typ, id, _ := strings.Cut(cid, ":")
		if err := e.REST(api).Watch(ctx, user, c.ID, typ, id); err != nil {
			c.Drop()
			return nil, fmt.Errorf("watcher %s: %w", user, err)
		}
	}
	return w, nil
}

func (w *Watcher) onEvent(ev Event) {
	if ev.Type != PresenceChanged {
		return
	}
	w.mu.Lock()
	w.seqs[ev.User] = append(w.seqs[ev.User], Seen{Online: ev.Online, At: ev.At})
	close(w.notify)
	w.notify = make(chan struct{})
	w.mu.Unlock()
}

// Close ends the watcher's socket.
func (w *Watcher) Close() { w.conn.Close() }

// Alive says whether the watcher's socket is still open.
func (w *Watcher) Alive() bool {
	select {
	case <-w.conn.Done():
		return false
	default:
		return true
	}
}

// Seq is what the watcher received for user, in order.
func (w *Watcher) Seq(user string) []Seen {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seqs[user])
}

// Len is how many events the watcher received for user.
func (w *Watcher) Len(user string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seqs[user])
}

// Last is the last state the watcher received for user (ok=false: none).
func (w *Watcher) Last(user string) (online, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.seqs[user]
	if len(s) == 0 {
		return false, false
	}
	return s[len(s)-1].Online, true
}

// Wait waits until cond holds, re-checking it at each event received.
func (w *Watcher) Wait(ctx context.Context, cond func() bool) error {
	for {
		w.mu.Lock()
		ch := w.notify
		w.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-w.conn.Done():
			if cond() {
				return nil
			}
			return fmt.Errorf("watcher %s: socket ended: %v", w.Name, w.conn.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitAll waits until cond holds for each of watchers.
func WaitAll(ctx context.Context, watchers []*Watcher, cond func(w *Watcher) bool) error {
	for _, w := range watchers {
		if err := w.Wait(ctx, func() bool { return cond(w) }); err != nil {
			return err
		}
	}
	return nil
}

// Format renders a sequence as "on off on".
func Format(seq []Seen) string {
	parts := make([]string, len(seq))
	for i, s := range seq {
		parts[i] = onOff(s.Online)
	}
	if len(parts) == 0 {
		return "(nothing)"
	}
	return strings.Join(parts, " ")
}

func onOff(online bool) string {
	if online {
		return "on"
	}
	return "off"
}

// Alternating returns the alternating sequence of n events starting with
// first: on off on … .
func Alternating(first bool, n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = first == (i%2 == 0)
	}
	return out
}

// CheckSeq compares what a watcher received for a user with want; the
// error names the user and both sequences.
func CheckSeq(w *Watcher, user string, want []bool) error {
	got := w.Seq(user)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Online == want[i]
	}
	if ok {
		return nil
	}
	ws := make([]Seen, len(want))
	for i, o := range want {
		ws[i] = Seen{Online: o}
	}
	return fmt.Errorf("watcher %s (on %s) received for %s: %s; want %s", w.Name, w.Gateway, user, Format(got), Format(ws))
}

// CheckAlternating checks that the events a watcher received for user
// alternate (no transition twice in a row: none duplicated, none missing
// between two), and that the first is `first` when given.
func CheckAlternating(w *Watcher, user string, first *bool) error {
	got := w.Seq(user)
	for i := range got {
		if (i == 0 && first != nil && got[0].Online != *first) || (i > 0 && got[i].Online == got[i-1].Online) {
			return fmt.Errorf("watcher %s (on %s) received for %s: %s (not alternating at event %d)", w.Name, w.Gateway, user, Format(got), i+1)
		}
	}
	return nil
}

// closeWatchers closes every watcher of a scenario.
func closeWatchers(ws []*Watcher) {
	for _, w := range ws {
		w.Close()
	}
}
