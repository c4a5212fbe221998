package allinone

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/token"
	"github.com/presencehq/presence/pkg/watch"
)

// connectUser opens an SDK-like socket for user and waits for connection.ok.
func connectUser(t *testing.T, p *Presence, user string) *websocket.Conn {
	t.Helper()
	return endpointOf(p).connect(t, user)
}

// connect opens an SDK-like socket to e for user and waits for
// connection.ok; the socket is read (and dropped) until it closes.
func (e endpoint) connect(t *testing.T, user string) *websocket.Conn {
	t.Helper()
	tok, _ := token.ForUser(e.secret, user)
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}})
	q := url.Values{"json": {string(payload)}, "api_key": {e.key}, "authorization": {tok}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, e.wsURL+"/connect?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(b), "connection.ok") {
		t.Fatalf("connect %s: %s %v", user, b, err)
	}
	go func() { // keep reading: answers pings and closes, drops events
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// online asks the REST API (server-side) who of ids is online.
func online(t *testing.T, p *Presence, ids ...string) map[string]bool {
	t.Helper()
	got, err := tryOnline(p, ids...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func tryOnline(p *Presence, ids ...string) (map[string]bool, error) {
	users, err := endpointOf(p).users(ids...)
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for id, u := range users {
		got[id] = u["online"] == true
	}
	return got, nil
}

// users reads ids (at most 100) server-side with queryUsers, which the api
// answers from its query index: id → the user as the SDK sees it, for those
// that exist.
func (e endpoint) users(ids ...string) (map[string]map[string]any, error) {
	q, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": ids}}, "limit": len(ids)})
	out, err := e.rest("GET", "/users?payload="+url.QueryEscape(string(q)), nil)
	if err != nil {
		return nil, err
	}
	got := map[string]map[string]any{}
	for _, u := range out["users"].([]any) {
		m := u.(map[string]any)
		got[m["id"].(string)] = m
	}
	return got, nil
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestPresenceRebuiltAfterTheBucketIsLost: the presence bucket is deleted
// (as if JetStream lost it); the workers notice, the gateways re-announce
// their live connections, and every connected user reads online again while
// one who left meanwhile reads offline.
func TestPresenceRebuiltAfterTheBucketIsLost(t *testing.T) {
	p := startForTest(t, Config{})
	connectUser(t, p, "ann")
	connectUser(t, p, "bob")
	gone := connectUser(t, p, "cat")
	waitFor(t, "all three online", 10*time.Second, func() bool {
		o := online(t, p, "ann", "bob", "cat")
		return o["ann"] && o["bob"] && o["cat"]
	})

	nc, err := nats.Connect(p.NATSURLAs(natsauth.Admin))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	// A watcher of the three, who must learn that cat left during the loss.
	events := watcher(t, p, nc, "wat", "ann", "bob", "cat")
	if err := js.DeleteKeyValue(context.Background(), store.BucketPresence); err != nil {
		t.Fatal(err)
	}
	gone.Close(websocket.StatusNormalClosure, "")
	start := time.Now()
	// The truth in KV: rebuilt from the gateways' live connections.
	visible := func(user string) bool {
		st, _, err := store.Get[model.Presence](context.Background(), kv(t, js), store.Key(user))
		return err == nil && st.Visible()
	}
	waitFor(t, "state rebuilt from the gateways", 20*time.Second, func() bool {
		return visible("ann") && visible("bob") && !visible("cat")
	})
	t.Logf("rebuilt %v after the bucket was deleted", time.Since(start).Round(time.Millisecond))
	for deadline := time.After(10 * time.Second); ; {
		select {
		case ev := <-events:
			if ev.user == "cat" && !ev.online {
				goto told
			}
		case <-deadline:
			t.Fatal("the watcher was never told that cat went offline during the loss")
		}
	}
told:

	// The api node, running through the loss, rebuilds its index from the
	// new bucket and agrees (a query may get a retryable 503 meanwhile).
	rebuilt := time.Now()
	waitFor(t, "the api agrees with the rebuilt state", 10*time.Second, func() bool {
		o, err := tryOnline(p, "ann", "bob", "cat")
		return err == nil && o["ann"] && o["bob"] && !o["cat"]
	})
	t.Logf("the api agreed %v after the state was rebuilt in KV", time.Since(rebuilt).Round(time.Millisecond))
}

func kv(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	b, err := js.KeyValue(context.Background(), store.BucketPresence)
	if err != nil {
		return nilKV{}
	}
	return b
}

// nilKV stands for a bucket that does not exist (yet): every key is missing.
type nilKV struct{ jetstream.KeyValue }

func (nilKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

func (nilKV) Bucket() string { return store.BucketPresence }

type seen struct {
	user   string
	online bool
}

// watcher connects user and watches others through the owning gateway; it
// returns the presence events the socket receives.
func watcher(t *testing.T, p *Presence, nc *nats.Conn, user string, others ...string) <-chan seen {
	t.Helper()
	tok, _ := token.ForUser(p.Secret, user)
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}})
	q := url.Values{"json": {string(payload)}, "api_key": {p.cfg.APIKey}, "authorization": {tok}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, p.WSURL()+"/connect?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	var ok struct {
		ConnectionID string `json:"connection_id"`
	}
	_, b, err := ws.Read(ctx)
	if err != nil || json.Unmarshal(b, &ok) != nil || ok.ConnectionID == "" {
		t.Fatalf("watcher connect: %s %v", b, err)
	}
	if err := watch.Send(ctx, nc, watch.Request{ConnID: ok.ConnectionID, UserID: user, Users: others}); err != nil {
		t.Fatal(err)
	}
	out := make(chan seen, 100)
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var ev struct {
				Type string `json:"type"`
				User struct {
					ID     string `json:"id"`
					Online bool   `json:"online"`
				} `json:"user"`
			}
			if json.Unmarshal(b, &ev) == nil && ev.Type == "user.presence.changed" {
				out <- seen{ev.User.ID, ev.User.Online}
			}
		}
	}()
	return out
}
