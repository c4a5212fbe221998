package hostile_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/allinone"
	"github.com/presencehq/presence/bench/hostile"
	"github.com/presencehq/presence/bench/load"
	"github.com/presencehq/presence/pkg/natsauth"
)

// attackFor is how long the attack runs at least, while the good users go
// on connecting and leaving: long enough for every attacker to have been
// dealt with more than once, short enough for make test.
const attackFor = 5 * time.Second

// TestHostileClientsDoNotHurtOthers runs misbehaving clients (this
// package's DefaultMix) against an all-in-one Presence while well-behaved
// users keep connecting and leaving under a watcher's eyes. The watcher
// must see every transition; flooders and oversized frames must be cut off
// with 1008 and 1009 every time; polite garbage must be left alone; no bad
// token may get in; every slow query must be answered; afterwards no
// goroutine or memory is left behind. (What the attack costs the good
// users' latency is the benchmark's to measure: presence-bench -run
// hostile.)
func TestHostileClientsDoNotHurtOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of attack; -short skips it")
	}
	p := start(t)
	target := hostile.Target{WSURL: p.WSURL() + "/connect", HTTPURL: p.HTTPURL(), Key: "hostile", Secret: p.Secret}
	sys := load.NewPresence(load.Target{URL: target.WSURL, Key: target.Key, Secret: target.Secret},
		load.REST{Base: target.HTTPURL, Key: target.Key, Secret: target.Secret}, nil)

	const goodUsers = 8
	var good []string
	for i := range goodUsers {
		good = append(good, fmt.Sprintf("good-%d", i))
	}
	ctx := t.Context()
	if err := sys.Setup(ctx, map[string][]string{"hostile": append([]string{"watcher"}, good...)}); err != nil {
		t.Fatal(err)
	}
	// Each good user's changes as the watcher reads them, in order.
	seen := map[string]chan bool{}
	for _, u := range good {
		seen[u] = make(chan bool, 16)
	}
	w, err := sys.Watch(ctx, 0, "watcher", []string{"hostile"}, func(c load.Change) {
		if ch, ok := seen[c.User]; ok {
			ch <- c.Online
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Warm up every lazily started part, then take the baseline.
	if _, err := cycle(ctx, sys, "good-0", seen["good-0"]); err != nil {
		t.Fatal(err)
	}
	baseGoroutines, baseHeap := settle()

	actx, stop := context.WithCancel(ctx)
	done := make(chan []hostile.Outcome, 1)
	go func() { done <- hostile.Attack(actx, target, hostile.DefaultMix(good)) }()
	var outcomes []hostile.Outcome
	endAttack := sync.OnceFunc(func() { stop(); outcomes = <-done })
	defer endAttack()

	// Meanwhile every good user connects and leaves, at least three times
	// and for as long as the attack is meant to run, and the watcher sees
	// each change.
	began := time.Now()
	// A cycle per user every goodPace at most: the good users share
	// loopback's address and stay under its 50 connects a second.
	const goodPace = 250 * time.Millisecond
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	for _, u := range good {
		wg.Go(func() {
			pace := time.NewTicker(goodPace)
			defer pace.Stop()
			for n := 0; n < 3 || time.Since(began) < attackFor; n++ {
				d, err := cycle(ctx, sys, u, seen[u])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				took = append(took, d)
				mu.Unlock()
				<-pace.C
			}
		})
	}
	wg.Wait()
	endAttack()
	slices.Sort(took)
	if len(took) > 0 {
		t.Logf("connect→online event for the watcher under attack: median %v, slowest %v (%d cycles)", took[len(took)/2], took[len(took)-1], len(took))
	}

	for _, o := range hostile.ByKind(outcomes) {
		t.Logf("%s", o)
	}
	for _, o := range outcomes {
		switch o.Kind {
		case hostile.KindFlood:
			cutOffEveryTime(t, o, websocket.StatusPolicyViolation, "a flood of health checks")
		case hostile.KindOversized:
			cutOffEveryTime(t, o, websocket.StatusMessageTooBig, "a frame past the limit")
		case hostile.KindGarbage:
			if len(o.Closed) > 0 || o.Err != nil || o.Sent == 0 {
				t.Errorf("%s: polite garbage must be sent and left alone (what is not a health check is ignored)", o)
			}
		case hostile.KindBadTokens:
			if o.LetIn > 0 || o.Sent == 0 {
				t.Errorf("%s: every bad token must be tried and refused", o)
			}
		case hostile.KindSlowQueries:
			if o.Unanswered > 0 || o.Sent == 0 {
				t.Errorf("%s: every slow query must be answered", o)
			}
		case hostile.KindDeaf:
			if o.Err != nil {
				t.Errorf("%s: a deaf socket must get in and watch", o)
			}
		}
	}

	// Nothing left behind: goroutines and heap back near the baseline. The
	// test's own idle keep-alive connections to the REST API are not the
	// server's to answer for.
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, heap := settle()
		if g <= baseGoroutines+20 && heap <= baseHeap+32<<20 {
			t.Logf("after: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)", g, baseGoroutines, heap>>10, baseHeap>>10)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("left behind: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)\n%s",
				g, baseGoroutines, heap>>10, baseHeap>>10, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(200 * time.Millisecond) // polling a condition with a deadline
	}
}

// cutOffEveryTime checks that the server ended every socket of o with
// want, and at least one.
func cutOffEveryTime(t *testing.T, o hostile.Outcome, want websocket.StatusCode, what string) {
	t.Helper()
	if o.Closed[want] == 0 || len(o.Closed) != 1 || o.Err != nil {
		t.Errorf("%s: %s must be closed with %d, every time", o, what, want)
	}
}

// cycle connects user, waits for the watcher to see it online, closes it
// and waits for offline; it returns how long online took to arrive.
func cycle(ctx context.Context, sys *load.Presence, user string, seen <-chan bool) (time.Duration, error) {
	began := time.Now()
	c, err := sys.Member(ctx, 0, user, nil)
	if err != nil {
		return 0, err
	}
	if err := expect(seen, user, true); err != nil {
		c.Close()
		return 0, err
	}
	took := time.Since(began)
	c.Close()
	return took, expect(seen, user, false)
}

func expect(seen <-chan bool, user string, online bool) error {
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	select {
	case got := <-seen:
		if got != online {
			return fmt.Errorf("the watcher saw %s online=%v, want online=%v next", user, got, online)
		}
		return nil
	case <-timeout.C:
		return fmt.Errorf("the watcher did not see %s online=%v within 20s", user, online)
	}
}

// settle collects garbage and returns the goroutine count and heap in use.
func settle() (int, uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}

// start starts an all-in-one Presence on loopback ports of its own, with
// the limits a deployment runs with. The attackers name their own
// addresses in X-Forwarded-For, believed from loopback as from a trusted
// load balancer; the good users connect from loopback itself.
func start(t *testing.T) *allinone.Presence {
	t.Helper()
	// The flags' defaults: a deployment's limits.
	var cfg allinone.Config
	cfg.RegisterFlags(flag.NewFlagSet("presence", flag.ContinueOnError))
	cfg.DataDir, cfg.HTTPAddr, cfg.WSAddr, cfg.NATSAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.APIKey, cfg.APISecret = "hostile", "hostile-secret-for-this-test"
	cfg.TrustedProxies = "127.0.0.1"
	v := natsauth.NewViolationLog(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Registered first, so it runs after p.Close: every service has then
	// said all it will.
	t.Cleanup(func() {
		if got := v.Seen(); len(got) > 0 {
			t.Errorf("NATS permission violations (pkg/natsauth lacks a subject a service uses):\n%s", strings.Join(got, "\n"))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := allinone.Start(ctx, cfg, slog.New(v))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
