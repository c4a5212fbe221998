package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/token"
)

const (
	testKey    = "test-key"
	testSecret = "test-secret"
)

// env is one api node on its own embedded NATS server.
type env struct {
	t     *testing.T
	url   string // NATS
	nc    *nats.Conn
	st    *store.Store
	srv   *api.Server
	base  string
	admin string // server-side token
	nodes int    // api nodes not yet closed
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := natsserver.StartForTest(t)
	e := &env{t: t, url: ns.ClientURL()}
	e.nc = e.connect()
	e.srv, e.base = e.startNode("api-1")
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	if e.st, err = store.Open(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	if e.admin, err = token.ForServer(testSecret); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) connect() *nats.Conn {
	nc, err := nats.Connect(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// startNode starts an api node on the env's NATS server and serves it.
func (e *env) startNode(node string) (*api.Server, string) {
	e.t.Helper()
	return e.startNodeIn(node, e.t.TempDir())
}

// startNodeIn starts an api node whose index lives in dir.
func (e *env) startNodeIn(node, dir string) (*api.Server, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := api.Config{APIKey: testKey, APISecret: testSecret, NodeName: node, IndexDir: dir}
	srv, err := api.New(ctx, cfg, e.connect(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	e.t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			e.t.Error(err)
		}
		// Once the last node is closed, and before NATS connections close
		// (which would end a leaked watch anyway), nothing of the api runs.
		if e.nodes--; e.nodes == 0 {
			noGoroutinesLeft(e.t, "presence/api.")
		}
	})
	e.nodes++
	return srv, hs.URL
}

func (e *env) userToken(id string) string {
	tok, err := token.ForUser(testSecret, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// req is one HTTP call.
type req struct {
	method, path string
	tok          string
	body         any
	query        url.Values
	base         string // another node's URL
	apiKey       *string
}

// call makes the request and returns the status and the decoded body.
func (e *env) call(r req) (int, map[string]any) {
	e.t.Helper()
	q := url.Values{}
	for k, v := range r.query {
		q[k] = v
	}
	key := testKey
	if r.apiKey != nil {
		key = *r.apiKey
	}
	q.Set("api_key", key)
	base := e.base
	if r.base != "" {
		base = r.base
	}
	var body io.Reader
	if r.body != nil {
		if raw, ok := r.body.([]byte); ok {
			body = bytes.NewReader(raw)
		} else {
			b, err := json.Marshal(r.body)
			if err != nil {
				e.t.Fatal(err)
			}
			body = bytes.NewReader(b)
		}
	}
	hr, err := http.NewRequest(r.method, base+r.path+"?"+q.Encode(), body)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.tok != "" {
		hr.Header.Set("Authorization", r.tok)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("%s %s: answer is not JSON: %s", r.method, r.path, raw)
	}
	if _, ok := out["duration"].(string); !ok {
		e.t.Errorf("%s %s: answer has no duration: %s", r.method, r.path, raw)
	}
	return resp.StatusCode, out
}

// ok makes a call that must succeed.
func (e *env) ok(r req) map[string]any {
	e.t.Helper()
	status, out := e.call(r)
	if status != http.StatusOK {
		e.t.Fatalf("%s %s: status %d, want 200: %v", r.method, r.path, status, out)
	}
	return out
}

// fails makes a call that must fail with status and SDK error code.
func (e *env) fails(r req, status, code int) map[string]any {
	e.t.Helper()
	got, out := e.call(r)
	c, _ := out["code"].(float64)
	if got != status || int(c) != code {
		e.t.Fatalf("%s %s: got status %d code %v, want %d/%d: %v", r.method, r.path, got, out["code"], status, code, out)
	}
	if sc, _ := out["StatusCode"].(float64); int(sc) != status {
		e.t.Errorf("StatusCode field %v, want %d", out["StatusCode"], status)
	}
	if _, ok := out["more_info"]; !ok {
		e.t.Errorf("error has no more_info: %v", out)
	}
	return out
}

// upsert creates users server-side.
func (e *env) upsert(users ...map[string]any) map[string]any {
	e.t.Helper()
	m := map[string]any{}
	for _, u := range users {
		m[u["id"].(string)] = u
	}
	return e.ok(req{method: "POST", path: "/users", tok: e.admin, body: map[string]any{"users": m}})["users"].(map[string]any)
}

// queryUsers runs GET /users with payload as tok.
func (e *env) queryUsers(tok string, payload map[string]any, query url.Values) []any {
	e.t.Helper()
	b, _ := json.Marshal(payload)
	q := url.Values{"payload": {string(b)}}
	for k, v := range query {
		q[k] = v
	}
	out := e.ok(req{method: "GET", path: "/users", tok: tok, query: q})
	return out["users"].([]any)
}

func ids(list []any) []string {
	var out []string
	for _, u := range list {
		out = append(out, u.(map[string]any)["id"].(string))
	}
	return out
}

// connect simulates a worker having seen a connection of user.
func (e *env) setOnline(user string, at time.Time) {
	e.t.Helper()
	_, _, _, err := store.Update(context.Background(), e.st.Presence, store.Key(user), func(p *model.Presence, _ bool) error {
		p.Conns = map[string]model.Conn{"gw~1~1": {Node: "gw", Epoch: 1, OpenedAt: at}}
		p.LastActive = at
		p.Online = true
		p.Version++
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// noGoroutinesLeft fails the test if, shortly after Close, a goroutine still
// runs code of the given package: every goroutine the api starts has an owner
// that waits for it.
func noGoroutinesLeft(t *testing.T, pkg string) {
	t.Helper()
	var stacks string
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		leaked := false
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, pkg) && !strings.Contains(g, "noGoroutinesLeft") && !strings.Contains(g, "testing.tRunner") {
				leaked = true
			}
		}
		if !leaked {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines of %s still running after Close:\n%s", pkg, stacks)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
