package api_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPagingUnderConcurrentUpsertsSeesEveryUserOnce: paging through 1,000
// users 30 at a time (the default sort, created_at then id) while other
// users are created and existing ones updated returns every user that
// existed throughout exactly once: pages neither overlap nor skip.
func TestPagingUnderConcurrentUpsertsSeesEveryUserOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 1,000 users; skipped with -short")
	}
	e := newEnv(t)
	const n = 1000
	for start := 0; start < n; start += 100 {
		batch := make([]map[string]any, 0, 100)
		for i := start; i < start+100; i++ {
			batch = append(batch, map[string]any{"id": fmt.Sprintf("pg%04d", i), "group": "paging"})
		}
		e.upsert(batch...)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writers: new users, and updates of existing ones
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			e.upsert(
				map[string]any{"id": fmt.Sprintf("new%04d", i), "group": "paging"},
				map[string]any{"id": fmt.Sprintf("pg%04d", (i*37)%n), "group": "paging", "edits": i},
			)
		}
	}()

	seen := map[string]int{}
	filter := map[string]any{"filter_conditions": map[string]any{"group": "paging"}, "limit": 30}
	for offset := 0; offset <= 1000; offset += 30 {
		filter["offset"] = offset
		page := ids(e.queryUsers(e.admin, filter, nil))
		for _, id := range page {
			seen[id]++
		}
		if len(page) < 30 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("pg%04d", i)
		if seen[id] != 1 {
			t.Errorf("%s seen %d times while paging, want exactly once", id, seen[id])
		}
	}
}
