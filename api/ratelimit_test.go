package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/token"
)

func TestWindowCountsEachKeyAndForgetsAtTheMinute(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 30, 0, time.UTC)
	w := newWindow(3, 100)
	w.now = func() time.Time { return now }
	reset := time.Date(2025, 1, 1, 12, 1, 0, 0, time.UTC)
	for i, want := range []int{2, 1, 0} {
		q, ok := w.take("ann")
		if !ok || q.remaining != want || q.limit != 3 || !q.reset.Equal(reset) || !q.counted {
			t.Fatalf("request %d = %+v, %v; want allowed, %d remaining, reset %v", i, q, ok, want, reset)
		}
	}
	if q, ok := w.take("ann"); ok || q.remaining != 0 {
		t.Fatalf("fourth request = %+v, %v; want refused", q, ok)
	}
	if _, ok := w.take("bob"); !ok {
		t.Fatal("bob refused for ann's requests")
	}
	now = now.Add(30 * time.Second) // the next minute
	if q, ok := w.take("ann"); !ok || q.remaining != 2 || !q.reset.Equal(reset.Add(time.Minute)) {
		t.Fatalf("in the next minute = %+v, %v; want a fresh count", q, ok)
	}
	if len(w.counts) != 1 {
		t.Fatalf("the new minute holds %d keys, want the last minute's dropped", len(w.counts))
	}
}

func TestWindowCountsAtMostMaxKeys(t *testing.T) {
	w := newWindow(1, 2)
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	for i := range 1000 {
		w.take(fmt.Sprint("user-", i))
	}
	if len(w.counts) != 2 {
		t.Fatalf("a flood of 1,000 users left %d keys counted, want at most 2", len(w.counts))
	}
	// Past the bound a user goes uncounted (the API key's limit bounds
	// them together).
	if q, ok := w.take("user-999"); !ok || q.counted {
		t.Fatalf("an uncounted user = %+v, %v; want let through, uncounted", q, ok)
	}
	if _, ok := w.take("user-0"); ok {
		t.Fatal("a counted user past the limit was let through")
	}
}

// TestRateLimitsAnswer429InTheSDKShape: a user is limited per endpoint, the
// API key across everyone; what a user's limit refuses does not count
// against the key; every answer carries the X-RateLimit-* headers of the
// limit closest to refusing it.
func TestRateLimitsAnswer429InTheSDKShape(t *testing.T) {
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const secret = "s"
	s, err := New(ctx, Config{APIKey: "k", APISecret: secret, NodeName: "api-t", IndexDir: t.TempDir(), RateLimitUser: 3, RateLimitAPIKey: 8}, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	now := time.Date(2025, 1, 1, 12, 0, 30, 0, time.UTC)
	s.userLimit.now = func() time.Time { return now }
	s.keyLimit.now = func() time.Time { return now }
	reset := strconv.FormatInt(time.Date(2025, 1, 1, 12, 1, 0, 0, time.UTC).Unix(), 10)

	call := func(as, path string) *httptest.ResponseRecorder {
		t.Helper()
		tok, err := token.ForServer(secret)
		if as != "" {
			tok, err = token.ForUser(secret, as)
		}
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, path+"&api_key=k", nil)
		r.Header.Set("Authorization", tok)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w
	}
	expect := func(w *httptest.ResponseRecorder, what string, status, limit, remaining int) {
		t.Helper()
		h := w.Header()
		got := fmt.Sprintf("%d, limit %s, remaining %s, reset %s", w.Code, h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"))
		if want := fmt.Sprintf("%d, limit %d, remaining %d, reset %s", status, limit, remaining, reset); got != want {
			t.Fatalf("%s: got %s; want %s (body %s)", what, got, want, w.Body)
		}
		if status != http.StatusTooManyRequests {
			return
		}
		var e struct {
			Code       int    `json:"code"`
			StatusCode int    `json:"StatusCode"`
			Message    string `json:"message"`
			Duration   string `json:"duration"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != 9 || e.StatusCode != 429 || e.Message == "" || e.Duration == "" {
			t.Fatalf("%s: body %s, want the SDK's error shape with code 9", what, w.Body)
		}
	}
	const types, users = "/channeltypes?x=1", `/users?payload={"filter_conditions":{}}`

	for i := range 3 {
		expect(call("ann", types), fmt.Sprintf("ann's request %d", i), 200, 3, 2-i)
	}
	expect(call("ann", types), "ann's fourth request to one endpoint", 429, 3, 0)
	// The key has counted 3 (not ann's refused fourth): the user's
	// remaining 2 is closer to refusing than the key's 4.
	expect(call("ann", users), "ann on another endpoint", 200, 3, 2)
	expect(call("bob", types), "bob", 200, 3, 2)
	// Server-side callers count against the key only.
	expect(call("", types), "server-side", 200, 8, 2)
	expect(call("", types), "server-side", 200, 8, 1)
	expect(call("", types), "server-side", 200, 8, 0)
	expect(call("", types), "server-side past the key's limit", 429, 8, 0)
	expect(call("cat", types), "a new user past the key's limit", 429, 8, 0)

	now = now.Add(time.Minute)
	reset = strconv.FormatInt(time.Date(2025, 1, 1, 12, 2, 0, 0, time.UTC).Unix(), 10)
	expect(call("ann", types), "ann the next minute", 200, 3, 2)
}

func TestChargeCountsMoreRequestsUpToTheLimit(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 30, 0, time.UTC)
	w := newWindow(10, 100)
	w.now = func() time.Time { return now }
	w.take("ann")
	if q := w.charge("ann", 4); !q.counted || q.remaining != 5 {
		t.Fatalf("after a request and 4 charged: %+v, want 5 remaining", q)
	}
	if q := w.charge("ann", 50); q.remaining != 0 {
		t.Fatalf("charged past the limit: %+v, want 0 remaining", q)
	}
	if _, ok := w.take("ann"); ok {
		t.Fatal("a request past the charged limit was let through")
	}
	if q := w.charge("bob", 3); q.counted {
		t.Fatalf("a key that made no request was charged: %+v", q)
	}
	now = now.Add(time.Minute)
	if q := w.charge("ann", 3); q.counted {
		t.Fatalf("last minute's key charged in a new minute: %+v", q)
	}
}

// A queryMembers that reads every member of a big channel (a sort no index
// has) counts as one request more per readsPerRequest members it read
// against the caller's limit; one the index answers counts as one.
func TestQueriesThatReadThousandsOfMembersCostMore(t *testing.T) {
	ns := natsserver.StartForTest(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const secret, members = "s", 2500
	s, err := New(ctx, Config{APIKey: "k", APISecret: secret, NodeName: "api-t", IndexDir: t.TempDir(), RateLimitUser: 100}, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	put := func(bucket, key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := s.js.PublishAsync("$KV."+bucket+"."+key, b); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().UTC()
	put(store.BucketChannels, store.ChannelKey("messaging", "big"), model.Channel{Type: "messaging", ID: "big", CreatedByID: "m0000", CreatedAt: at, UpdatedAt: at})
	for i := range members {
		u := fmt.Sprintf("m%04d", i)
		put(store.BucketUsers, store.Key(u), model.User{ID: u, Name: fmt.Sprint("name ", members-i), Role: "user", CreatedAt: at, UpdatedAt: at})
		put(store.BucketMembers, store.MemberKey("messaging", "big", u), model.Member{UserID: u, ChannelRole: roleMember, CreatedAt: at, UpdatedAt: at})
	}
	select {
	case <-s.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("KV writes not acknowledged")
	}
	tok, err := token.ForUser(secret, "m0001")
	if err != nil {
		t.Fatal(err)
	}
	remaining := func(sort string) int {
		t.Helper()
		payload := `{"type":"messaging","id":"big","limit":30,"sort":[{"field":"` + sort + `","direction":1}]}`
		r := httptest.NewRequest(http.MethodGet, "/members?api_key=k&payload="+url.QueryEscape(payload), nil)
		r.Header.Set("Authorization", tok)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("queryMembers by %s: %d %s", sort, w.Code, w.Body)
		}
		n, err := strconv.Atoi(w.Header().Get("X-RateLimit-Remaining"))
		if err != nil {
			t.Fatalf("queryMembers by %s: X-RateLimit-Remaining %q", sort, w.Header().Get("X-RateLimit-Remaining"))
		}
		return n
	}
	before := remaining("created_at") // the index's order: one request
	if got := remaining("created_at"); got != before-1 {
		t.Fatalf("a query the index answers cost %d requests, want 1", before-got)
	}
	// By name: every member read, 2,500 of them.
	if got, want := remaining("name"), before-1-(members-1)/readsPerRequest-1; got != want {
		t.Fatalf("a query reading %d members left %d of the limit, want %d (it costs %d requests)", members, got, want, 1+(members-1)/readsPerRequest)
	}
}
