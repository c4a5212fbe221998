package allinone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/store"
)

// TestKill9LosesNoAcknowledgedUpsert runs make run's binary as a process,
// kills it with SIGKILL in the middle of a burst of upserts while users are
// connected, and starts it again on the same data directory. Every upsert
// that was answered 201 must be there (with its value or a later one), the
// api's bbolt index must agree with KV, and nobody may be left online. Both
// ways JetStream can write: into the OS page cache, fsynced every 2 minutes
// (nats-server's default), and fsynced before every acknowledgement
// (-nats-sync-always). A SIGKILL spares the page cache, so neither may lose
// anything; only a power loss or kernel crash tells them apart.
func TestKill9LosesNoAcknowledgedUpsert(t *testing.T) {
	bin := buildPresence(t)
	for _, tc := range []struct {
		name       string
		syncAlways bool
	}{
		{"writes in the page cache survive kill -9", false},
		{"writes fsynced before their acknowledgement survive kill -9", true},
	} {
		t.Run(tc.name, func(t *testing.T) { killDuringUpserts(t, bin, tc.syncAlways) })
	}
}

const (
	crashWriters         = 8   // concurrent upserting clients
	crashUsersPerWriter  = 5   // each writer upserts its own users in turn
	crashAckedBeforeKill = 300 // the kill comes once this many were acknowledged
)

func killDuringUpserts(t *testing.T, bin string, syncAlways bool) {
	dir := t.TempDir()
	before := startProcess(t, bin, dir, syncAlways)

	online := []string{"online-0", "online-1", "online-2", "online-3", "online-4"}
	for _, u := range online {
		before.connect(t, u)
	}
	waitFor(t, "connected users online", 10*time.Second, func() bool {
		o, err := before.users(online...)
		return err == nil && len(o) == len(online) && !slices.ContainsFunc(online, func(u string) bool { return o[u]["online"] != true })
	})

	// The burst: each writer upserts its users in turn, each upsert with
	// the writer's next sequence number; writers own disjoint users, so a
	// user's sequence only grows.
	var (
		acked     = make([]map[string]int, crashWriters) // writer → user → last acknowledged seq
		attempted = make([]map[string]int, crashWriters) // writer → user → last seq sent
		failed    = make([]error, crashWriters)          // the first failure of each writer
		failures  atomic.Int64                           // writers that failed
		total     atomic.Int64
		killed    atomic.Bool
		wg        sync.WaitGroup
	)
	burst := time.Now()
	for w := range crashWriters {
		acked[w], attempted[w] = map[string]int{}, map[string]int{}
		wg.Go(func() {
			for seq := 1; ; seq++ {
				user := fmt.Sprintf("burst-%d-%d", w, seq%crashUsersPerWriter)
				attempted[w][user] = seq
				_, err := before.rest("POST", "/users", map[string]any{"users": map[string]any{
					user: map[string]any{"id": user, "name": fmt.Sprintf("Writer %d", w), "seq": seq},
				}})
				if err == nil { // answered 201: acknowledged, even if the kill came right after
					acked[w][user] = seq
					total.Add(1)
				}
				if killed.Load() {
					return // the kill may have cut any later upsert short
				}
				if err != nil {
					failed[w] = err
					failures.Add(1)
					return
				}
			}
		})
	}
	waitFor(t, fmt.Sprintf("%d upserts acknowledged", crashAckedBeforeKill), 30*time.Second, func() bool {
		return total.Load() >= crashAckedBeforeKill || failures.Load() > 0
	})
	killed.Store(true)
	before.kill(t)
	wg.Wait()
	for w, err := range failed {
		if err != nil {
			t.Fatalf("writer %d: an upsert failed before the kill: %v\n%s", w, err, before.log())
		}
	}
	want, sent := map[string]int{}, map[string]int{}
	for w := range crashWriters {
		for u, seq := range acked[w] {
			want[u] = seq
		}
		for u, seq := range attempted[w] {
			sent[u] = seq
		}
	}
	t.Logf("killed (SIGKILL) %v into the burst, after %d acknowledged upserts", time.Since(burst).Round(time.Millisecond), total.Load())

	began := time.Now()
	after := startProcess(t, bin, dir, syncAlways)
	t.Logf("restarted in %v; %s", time.Since(began).Round(time.Millisecond), after.indexOpened())

	// KV, the system of record, read straight through the embedded NATS
	// server, then the api's index through queryUsers (which first catches
	// up with KV's last revision).
	ids := slices.Sorted(maps.Keys(sent))
	js := after.jetStream(t)
	users, err := js.KeyValue(context.Background(), store.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	inKV := map[string]int{}
	for _, u := range ids {
		v, _, err := store.Get[model.User](context.Background(), users, store.Key(u))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		inKV[u] = seqOf(v.Custom["seq"])
	}
	inIndex, err := after.users(ids...)
	if err != nil {
		t.Fatal(err)
	}
	lost, later := 0, 0
	for _, u := range ids {
		kvSeq, inKVToo := inKV[u]
		view, indexed := inIndex[u]
		switch {
		case indexed != inKVToo:
			t.Errorf("%s: in KV %v (seq %d), in the index %v (%v)", u, inKVToo, kvSeq, indexed, view)
		case indexed && seqOf(view["seq"]) != kvSeq:
			t.Errorf("%s: seq %d in KV, %v in the index", u, kvSeq, view["seq"])
		}
		if acked, ok := want[u]; ok && (!inKVToo || kvSeq < acked) {
			lost++
			if inKVToo {
				t.Errorf("%s: upsert seq %d was acknowledged, KV has seq %d", u, acked, kvSeq)
			} else {
				t.Errorf("%s: upsert seq %d was acknowledged, KV has no such user", u, acked)
			}
		}
		if inKVToo && kvSeq > sent[u] {
			t.Errorf("%s: KV has seq %d, never sent (last sent %d)", u, kvSeq, sent[u])
		}
		if inKVToo && kvSeq > want[u] {
			later++ // an upsert in flight at the kill was stored, unanswered
		}
	}
	t.Logf("%d users, %d acknowledged upserts lost; %d users hold an upsert that was in flight at the kill", len(ids), lost, later)

	// The dead process's connections: the gateway restarts under a new
	// epoch, which retires them at once (I6).
	began = time.Now()
	presence, err := js.KeyValue(context.Background(), store.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no user online after the restart (REST and KV)", 15*time.Second, func() bool {
		o, err := after.users(online...)
		if err != nil || len(o) != len(online) {
			return false
		}
		for _, u := range online {
			st, _, err := store.Get[model.Presence](context.Background(), presence, store.Key(u))
			if o[u]["online"] != false || err != nil || st.Visible() {
				return false
			}
		}
		return true
	})
	t.Logf("the dead process's %d users read offline %v after the restart", len(online), time.Since(began).Round(time.Millisecond))
}

// seqOf reads a sequence number decoded from JSON (a float64); -1 if absent.
func seqOf(v any) int {
	f, ok := v.(float64)
	if !ok {
		return -1
	}
	return int(f)
}

// buildPresence builds make run's binary (allinone/cmd/presence) for t.
func buildPresence(t *testing.T) string {
	t.Helper()
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	bin := filepath.Join(t.TempDir(), "presence")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	if out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "./cmd/presence").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/presence: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", filepath.Base(bin), time.Since(began).Round(time.Millisecond))
	return bin
}

// process is the all-in-one binary running as a child process.
type process struct {
	endpoint
	natsURL string
	dataDir string
	cmd     *exec.Cmd
	out     *banner
	errs    *syncBuffer
	done    chan struct{} // closed when the process has exited
}

// startProcess runs bin on dataDir with every listener on a free loopback
// port, and waits until its banner names them.
func startProcess(t *testing.T, bin, dataDir string, syncAlways bool) *process {
	t.Helper()
	p := &process{out: &banner{urls: map[string]string{}, ready: make(chan struct{})}, errs: &syncBuffer{}, done: make(chan struct{})}
	p.key, p.secret, p.dataDir = "crash-key", "crash-secret", dataDir
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(),
		"PRESENCE_DATA_DIR="+dataDir,
		"PRESENCE_HTTP_ADDR=127.0.0.1:0", "PRESENCE_WS_ADDR=127.0.0.1:0", "PRESENCE_NATS_ADDR=127.0.0.1:0",
		"PRESENCE_API_KEY="+p.key, "PRESENCE_API_SECRET="+p.secret,
		"PRESENCE_NATS_SYNC_ALWAYS="+strconv.FormatBool(syncAlways),
		"PRESENCE_LOG_LEVEL=info", "PRESENCE_LOG_FORMAT=text")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.errs
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(t) })
	select {
	case <-p.out.ready:
	case <-p.done:
		t.Fatalf("presence exited before it served: %v\n%s", p.cmd.ProcessState, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("presence did not serve within 60 s\n%s", p.log())
	}
	p.httpURL, p.wsURL, p.natsURL = p.out.url("http"), strings.TrimSuffix(p.out.url("ws"), "/connect"), p.out.url("nats")
	return p
}

// kill sends SIGKILL and waits for the exit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	<-p.done
}

func (p *process) log() string { return p.out.String() + p.errs.String() }

// indexOpened is the api's log line saying how it opened its index. The
// line is on standard error, which may trail the banner on standard output.
func (p *process) indexOpened() string {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) { // polling the log
		for line := range strings.Lines(p.errs.String()) {
			if strings.Contains(line, "index: ") {
				return strings.TrimSpace(line)
			}
		}
	}
	return "(the index logged nothing)"
}

// jetStream connects to the embedded NATS server as its admin (whose
// password the process keeps in its data dir), for the test's end.
func (p *process) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	pw, err := os.ReadFile(passwordFile(p.dataDir, natsauth.Admin))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(p.natsURL, nats.UserInfo(natsauth.Admin.User(), strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// banner collects a process's standard output and finds in its banner the
// URLs it serves, by scheme.
type banner struct {
	syncBuffer
	mu    sync.Mutex
	line  []byte
	urls  map[string]string
	ready chan struct{} // closed once http, ws and nats URLs were seen
	seen  bool          // ready is closed
}

func (b *banner) Write(p []byte) (int, error) {
	b.syncBuffer.Write(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.line = append(b.line, p...)
	for {
		i := bytes.IndexByte(b.line, '\n')
		if i < 0 {
			break
		}
		for _, f := range strings.Fields(string(b.line[:i])) {
			scheme, _, ok := strings.Cut(f, "://")
			if ok && b.urls[scheme] == "" {
				b.urls[scheme] = f
			}
		}
		b.line = b.line[i+1:]
	}
	if b.urls["http"] != "" && b.urls["ws"] != "" && b.urls["nats"] != "" && !b.seen {
		close(b.ready)
		b.seen = true
	}
	return len(p), nil
}

func (b *banner) url(scheme string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.urls[scheme]
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
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
