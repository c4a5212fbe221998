package load

import (
	"context"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/presencehq/presence/bench/peer"
)

// startPeer runs the real peer server on a random loopback port until the
// test ends, and returns its websocket URL.
func startPeer(t *testing.T, secret string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- peer.Run(ctx, peer.Config{Addr: "127.0.0.1:0", Secret: secret, Listening: func(a net.Addr) { addr <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("peer.Run: %v", err)
		}
	})
	select {
	case a := <-addr:
		return "ws://" + a.String() + "/connection/websocket"
	case err := <-done:
		t.Fatalf("peer did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("peer did not start within 10 s")
	}
	return ""
}

// pushes records the join and leave pushes a socket receives.
type pushes struct {
	mu  sync.Mutex
	got []JoinLeave
}

func (p *pushes) on(_ *CentrifugeConn, jl JoinLeave, _ time.Time) {
	p.mu.Lock()
	p.got = append(p.got, jl)
	p.mu.Unlock()
}

// waitFor waits until the pushes received include want, in order.
func (p *pushes) waitFor(t *testing.T, want ...JoinLeave) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		var seen []JoinLeave
		for _, jl := range p.got {
			jl.Client = ""
			seen = append(seen, jl)
		}
		p.mu.Unlock()
		i := 0
		for _, jl := range seen {
			if i < len(want) && jl == want[i] {
				i++
			}
		}
		if i == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushes %+v, want %+v among them", seen, want)
		}
		time.Sleep(10 * time.Millisecond) // polling what the reader recorded
	}
}

func TestCentrifugeWatcherSeesMembersJoinAndLeave(t *testing.T) {
	url := startPeer(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := NewCentrifugeDialer(url, "s", "127.0.0.1")
	var w pushes
	watcher, err := d.Dial(ctx, "watcher", []string{"room-1", "room-2"}, w.on)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if watcher.ID == "" {
		t.Fatal("the connect reply named no client id")
	}
	ann, err := d.Dial(ctx, "ann", []string{"room-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := d.Dial(ctx, "bob", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Subscribe(ctx, "room-2"); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, JoinLeave{Channel: "room-1", User: "ann", Join: true})
	w.waitFor(t, JoinLeave{Channel: "room-2", User: "bob", Join: true})
	present, err := watcher.Presence(ctx, "room-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(present)); !slices.Equal(got, []string{"ann", "watcher"}) {
		t.Fatalf("presence of room-1: %v, want [ann watcher]", got)
	}
	ann.Close()
	bob.Drop()
	w.waitFor(t, JoinLeave{Channel: "room-1", User: "ann", Join: true}, JoinLeave{Channel: "room-1", User: "ann"})
	w.waitFor(t, JoinLeave{Channel: "room-2", User: "bob", Join: true}, JoinLeave{Channel: "room-2", User: "bob"})
}

func TestCentrifugeRefusesABadToken(t *testing.T) {
	url := startPeer(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c, err := NewCentrifugeDialer(url, "not-the-secret", "").Dial(ctx, "eve", nil, nil); err == nil {
		c.Close()
		t.Fatal("a token signed with the wrong secret connected")
	}
}

func TestCentrifugeMembersThatDoNotAskGetNoJoinLeave(t *testing.T) {
	url := startPeer(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := NewCentrifugeDialer(url, "s", "")
	var w pushes
	watcher, err := d.Dial(ctx, "watcher", []string{"room"}, w.on)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	member, err := d.Dial(ctx, "ann", []string{"room"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	bob, err := d.Dial(ctx, "bob", []string{"room"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bob.Close()
	w.waitFor(t, JoinLeave{Channel: "room", User: "bob", Join: true}, JoinLeave{Channel: "room", User: "bob"})
	// A reply on the member's socket comes after what was queued for it.
	if _, err := member.Presence(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if n := member.unasked.Load(); n != 0 {
		t.Fatalf("a member that did not ask for join/leave got %d of them", n)
	}
}
