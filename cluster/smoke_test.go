package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/cluster/probe"
	"github.com/presencehq/presence/pkg/token"
)

const (
	smokeKey    = "smoke-key"
	smokeSecret = "smoke-secret"
	// A short lease keeps the test quick; the default is 10 s.
	smokeLeaseTTL = 4 * time.Second
)

// syncBuffer collects the cluster's output, shown when a test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// ChildMain, when set (by the chaos tests), is given the test binary's
// arguments first and reports whether it served them: the binary started
// as a child process of a test (see chaos.StormClientsCommand).
var ChildMain func(args []string) bool

func TestMain(m *testing.M) {
	if ChildMain != nil && ChildMain(os.Args[1:]) {
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the binaries once for every test of the package.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		began := time.Now()
		if binDir, buildErr = os.MkdirTemp("", "presence-cluster-bin-"); buildErr != nil {
			return
		}
		var log bytes.Buffer
		if buildErr = Build(ctx, "..", binDir, &log); buildErr != nil {
			buildErr = fmt.Errorf("%w\n%s", buildErr, log.String())
			return
		}
		t.Logf("built the binaries in %.1fs", time.Since(began).Seconds())
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// startForTest starts top (free ports given by the caller) in a temporary
// directory with the built binaries.
func startForTest(t *testing.T, top Topology, env map[string]string) *Cluster {
	t.Helper()
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &syncBuffer{}
	began := time.Now()
	c, err := Start(ctx, Config{
		Topology:  top,
		BinDir:    bin,
		DeployDir: "../deploy",
		DataDir:   t.TempDir(),
		APIKey:    smokeKey,
		APISecret: smokeSecret,
		Env:       env,
		Log:       out,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("cluster ready in %.1fs", time.Since(began).Seconds())
	t.Cleanup(func() {
		began := time.Now()
		c.Close()
		t.Logf("cluster stopped in %.1fs", time.Since(began).Seconds())
		// Every service runs as its own NATS user (deploy/nats/auth.conf):
		// a refused subject is a permission pkg/natsauth lacks.
		for line := range strings.Lines(out.String()) {
			if strings.Contains(line, "Permissions Violation") || strings.Contains(line, "Publish Violation") || strings.Contains(line, "Subscription Violation") {
				t.Errorf("NATS permission violation: %s", strings.TrimSpace(line))
			}
		}
		if t.Failed() {
			t.Logf("cluster output:\n%s", out.String())
		}
	})
	return c
}

// connect opens a socket as user, the way the SDK does, and keeps reading
// it (so pings are answered) until the test ends.
func connect(t *testing.T, connectURL, user string) string {
	t.Helper()
	tok, err := token.ForUser(smokeSecret, user)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"user_id": user, "user_details": map[string]any{"id": user}, "client_request_id": "smoke"})
	q := url.Values{"json": {string(payload)}, "api_key": {smokeKey}, "authorization": {tok}, "stream-auth-type": {"jwt"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, connectURL+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	var first struct {
		Type         string `json:"type"`
		ConnectionID string `json:"connection_id"`
	}
	if err := json.Unmarshal(b, &first); err != nil || first.Type != "connection.ok" {
		t.Fatalf("connect %s: first frame %s", user, b)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := ws.Read(rctx); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		rcancel()
		ws.CloseNow()
		<-done
	})
	return first.ConnectionID
}

// online asks an api node, server-side, which of users are online.
func online(t *testing.T, apiURL string, users ...string) map[string]bool {
	t.Helper()
	tok, err := token.ForServer(smokeSecret)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": users}}})
	req, _ := http.NewRequest(http.MethodGet, apiURL+"/users?"+url.Values{"api_key": {smokeKey}, "payload": {string(payload)}}.Encode(), nil)
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Users []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		} `json:"users"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /users: %d %v", resp.StatusCode, err)
	}
	m := map[string]bool{}
	for _, u := range out.Users {
		m[u.ID] = u.Online
	}
	return m
}

// waitFor polls cond every 50 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(began)
}

func readyz(gatewayURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return probe.HTTP(ctx, gatewayURL+"/readyz", http.StatusOK)
}

// TestSmoke runs the whole topology as processes: a user connected to
// gateway-1 reads online through an api node; after kill -9 of gateway-1
// (by the pid in its pid file) the user reads offline within the lease,
// while a user connected to gateway-2 stays online (I4).
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	top, err := Default().Without(LB).WithFreePorts()
	if err != nil {
		t.Fatal(err)
	}
	c := startForTest(t, top, map[string]string{
		"PRESENCE_LEASE_TTL":      smokeLeaseTTL.String(),
		"PRESENCE_LEASE_INTERVAL": "1s",
		"PRESENCE_LEASE_CHECK":    "250ms",
	})
	for _, g := range []string{"gateway-1", "gateway-2"} {
		if err := readyz(c.URL(g)); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
	}

	alice := connect(t, c.ConnectURL("gateway-1"), "alice")
	bob := connect(t, c.ConnectURL("gateway-2"), "bob")
	if !strings.HasPrefix(alice, "gateway-1~") || !strings.HasPrefix(bob, "gateway-2~") {
		t.Fatalf("connection ids %s, %s do not name their gateways", alice, bob)
	}
	took := waitFor(t, 10*time.Second, "alice and bob online through api-1", func() bool {
		m := online(t, c.URL("api-1"), "alice", "bob")
		return m["alice"] && m["bob"]
	})
	t.Logf("online through api-1 %dms after connecting", took.Milliseconds())
	checkScrapes(t, c)

	b, err := os.ReadFile(filepath.Join(c.DataDir(), "gateway-1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid != c.Pid("gateway-1") {
		t.Fatalf("gateway-1.pid holds %q, the process is %d", b, c.Pid("gateway-1"))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, 5*time.Second, "gateway-1 gone", func() bool { return !c.Running("gateway-1") })
	if readyz(c.URL("gateway-1")) == nil {
		t.Fatal("gateway-1 still answers /readyz after kill -9")
	}

	within := smokeLeaseTTL + 3*time.Second
	waitFor(t, within, "alice offline after kill -9 of gateway-1", func() bool {
		m := online(t, c.URL("api-2"), "alice", "bob")
		if !m["bob"] {
			t.Fatal("bob, on the live gateway-2, went offline")
		}
		return !m["alice"]
	})
	t.Logf("alice offline %dms after kill -9 of gateway-1 (lease %s)", time.Since(killed).Milliseconds(), smokeLeaseTTL)

	// A while after the expiry, gateway-2's user is still online.
	time.Sleep(smokeLeaseTTL / 2)
	if m := online(t, c.URL("api-1"), "bob"); !m["bob"] {
		t.Fatal("bob, on the live gateway-2, went offline")
	}
	if err := readyz(c.URL("gateway-2")); err != nil {
		t.Fatalf("gateway-2: %v", err)
	}

	// gateway-1 comes back under its name and takes users again.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Restart(ctx, "gateway-1"); err != nil {
		t.Fatal(err)
	}
	connect(t, c.ConnectURL("gateway-1"), "carol")
	waitFor(t, 10*time.Second, "carol, on the restarted gateway-1, online", func() bool { return online(t, c.URL("api-2"), "carol")["carol"] })
}
