package load

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeGateway answers connects the way Presence does: connection.ok first,
// or an error frame and a 1013 close for a rate-limited connect (each user's
// first attempt here). It counts the health checks it receives.
type fakeGateway struct {
	mu     sync.Mutex
	tried  map[string]bool
	checks int
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	var req struct {
		UserID string `json:"user_id"`
	}
	_ = json.Unmarshal([]byte(r.URL.Query().Get("json")), &req)
	f.mu.Lock()
	first := !f.tried[req.UserID]
	f.tried[req.UserID] = true
	f.mu.Unlock()
	ctx := context.Background()
	if first {
		_ = ws.Write(ctx, websocket.MessageText, []byte(`{"error":{"code":9,"message":"too many connects right now, retry shortly","StatusCode":429}}`))
		_ = ws.Close(websocket.StatusTryAgainLater, "connect rejected")
		return
	}
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"connection.ok","connection_id":"gw~1~`+req.UserID+`"}`))
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		if strings.Contains(string(b), `"health.check"`) {
			f.mu.Lock()
			f.checks++
			f.mu.Unlock()
		}
	}
}

func TestConnectAllRetriesRateLimitedConnectsAndKeepsSocketsHealthy(t *testing.T) {
	f := &fakeGateway{tried: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	target := Target{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/connect", Key: "k", Secret: "s"}
	dialers := []*Dialer{NewDialer(target, "127.0.0.1"), NewDialer(target, "")}
	pool := NewPool(50 * time.Millisecond)
	users := []string{"a", "b", "c", "d", "e"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(ctx context.Context, i int, user string) (Socket, error) {
		return dialers[i%len(dialers)].Dial(ctx, user)
	}
	got := ConnectAll(ctx, pool, dial, users, 2)
	if got.Conns != len(users) || got.Failed != 0 || got.Retries != len(users) {
		t.Fatalf("connected %+v, want %d conns, 0 failed, %d retries", got, len(users), len(users))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		checks := f.checks
		f.mu.Unlock()
		if checks >= 2*len(users) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d health checks reached the server, want at least %d", checks, 2*len(users))
		}
		time.Sleep(10 * time.Millisecond) // polling a counter
	}
	pool.Close()
	if n := pool.Len(); n != 0 {
		// Close waits for nothing but the closes; sockets leave the pool as
		// their readers end.
		deadline := time.Now().Add(5 * time.Second)
		for pool.Len() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling the pool
		}
		if pool.Len() != 0 {
			t.Fatalf("%d sockets still open after Close", pool.Len())
		}
	}
}
