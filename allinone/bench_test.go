package allinone

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkUpsert measures what -nats-sync-always costs: upserts through
// REST (POST /users, one user a call, as the SDK's upsertUser sends them)
// against an all-in-one server in this process, with JetStream writing into
// the page cache (nats-server's default, fsync every 2 minutes) and with an
// fsync before every acknowledgement. Each upsert changes a profile, so the
// api writes KV and publishes a user.updated command the worker consumes.
// The data directory is the test's temporary directory: it must be on the
// disk being measured (not a tmpfs, where an fsync costs nothing).
//
//	go test ./allinone -run '^$' -bench Upsert -benchtime 2000x
func BenchmarkUpsert(b *testing.B) {
	for _, sync := range []struct {
		name   string
		always bool
	}{{"sync=default", false}, {"sync=always", true}} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d", sync.name, clients), func(b *testing.B) {
				benchmarkUpsert(b, sync.always, clients)
			})
		}
	}
}

func benchmarkUpsert(b *testing.B, syncAlways bool, clients int) {
	const users = 1000
	cfg := Config{
		DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
		APIKey: "bench", NodeName: "gateway-1", ActiveInterval: 15 * time.Minute, NATSSyncAlways: syncAlways,
	}
	p, err := Start(b.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	e := endpointOf(p)
	upsert := func(i int) error {
		u := fmt.Sprintf("u%d", i%users)
		_, err := e.rest("POST", "/users", map[string]any{"users": map[string]any{u: map[string]any{"id": u, "name": "User", "seq": i}}})
		return err
	}
	for i := range users { // every user exists: each measured upsert replaces a profile
		if err := upsert(i); err != nil {
			b.Fatal(err)
		}
	}

	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, b.N)
		firstErr error
		wg       sync.WaitGroup
	)
	b.ResetTimer()
	began := time.Now()
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					break
				}
				t0 := time.Now()
				if err := upsert(users + i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "upserts/s")
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*q))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
