package natsauth_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/natsauth"
	"github.com/presencehq/presence/pkg/natsconn"
	"github.com/presencehq/presence/pkg/natsserver"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// startServer starts an embedded server with every role as a user.
func startServer(t *testing.T) (url string, pw natsauth.Passwords) {
	t.Helper()
	pw = natsauth.Passwords{}
	for _, r := range natsauth.Roles {
		pw[r.Name] = "pw-" + r.Name
	}
	users, err := natsauth.ServerUsers(pw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := natsserver.Start(natsserver.Options{Addr: "127.0.0.1:0", StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL(), pw
}

// dial connects as r.
func dial(t *testing.T, url string, r natsauth.Role, pw natsauth.Passwords) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(url, "test "+r.Name, slog.New(slog.DiscardHandler), natsconn.As(r, "", pw[r.Name]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// flush makes the server take in everything nc sent before it.
func flush(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// published says whether a message nc publishes on subj reaches a
// subscriber. The server routes messages in the order it takes them in, so
// a marker the admin sends after nc's flush arrives after nc's message, if
// that was let through.
func published(t *testing.T, admin, nc *nats.Conn, subj string) bool {
	t.Helper()
	sub, err := admin.SubscribeSync(subj)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	flush(t, admin)
	if err := nc.Publish(subj, []byte("forged")); err != nil {
		t.Fatal(err)
	}
	flush(t, nc)
	if err := admin.Publish(subj, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg.Data) == "forged"
}

// subscribed says whether nc's subscription to pattern gets messages:
// the admin publishes on a subject it matches, then a marker on nc's
// inbox; nc reads its socket in order, so the first has been queued when
// the marker arrives.
func subscribed(t *testing.T, admin, nc *nats.Conn, r natsauth.Role, pattern string) bool {
	t.Helper()
	sub, err := nc.SubscribeSync(pattern)
	if err != nil {
		t.Fatal(err)
	}
	marker, err := nc.SubscribeSync(r.Inbox() + ".marker")
	if err != nil {
		t.Fatal(err)
	}
	flush(t, nc)
	concrete := strings.NewReplacer("*", "x", ">", "x").Replace(pattern)
	if err := admin.Publish(concrete, []byte("event")); err != nil {
		t.Fatal(err)
	}
	if err := admin.Publish(r.Inbox()+".marker", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := marker.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	n, _, err := sub.Pending()
	if err != nil {
		return false // the server closed the subscription it refused
	}
	return n > 0
}

func TestRolesMayUseOnlyTheirSubjects(t *testing.T) {
	url, pw := startServer(t)
	kv := func(bucket, key string) string { return "$KV." + bucket + "." + key }
	cases := []struct {
		name    string
		role    natsauth.Role
		sub     bool // subscribe rather than publish
		subject string
		allowed bool
	}{
		{"a reader cannot forge a connection event", natsauth.Reader, false, subject.ConnEvent("gateway-1", "mallory"), false},
		{"a reader cannot forge a presence change", natsauth.Reader, false, subject.UserEvents("alice"), false},
		{"a reader cannot forge a channel event", natsauth.Reader, false, subject.ChannelEvents("messaging", "general"), false},
		{"a reader cannot write presence state", natsauth.Reader, false, kv(store.BucketPresence, "alice"), false},
		{"a reader cannot make a user invisible", natsauth.Reader, false, subject.UserCommand("alice"), false},
		{"a reader cannot ask a gateway to add watches", natsauth.Reader, false, subject.GatewayWatch("gateway-1"), false},
		{"a reader cannot call the JetStream API", natsauth.Reader, false, "$JS.API.STREAM.DELETE." + store.StreamInput, false},
		{"a reader watches presence events", natsauth.Reader, true, subject.EventsAll, true},
		{"a reader asks presence queries", natsauth.Reader, false, subject.QueryPrefix + ".users", true},
		{"a reader finds the presence service", natsauth.Reader, false, "$SRV.INFO.presence", true},
		{"a reader cannot answer presence queries", natsauth.Reader, true, subject.QueryAll, false},
		{"an api node answers presence queries", natsauth.API, true, subject.QueryAll, true},
		{"a gateway cannot answer presence queries", natsauth.Gateway, true, subject.QueryAll, false},
		{"a reader cannot read the api's answers", natsauth.Reader, true, natsauth.API.Inbox() + ".>", false},
		{"a reader cannot watch the input", natsauth.Reader, true, subject.InputAll, false},

		{"a gateway publishes connection events", natsauth.Gateway, false, subject.ConnEvent("gateway-1", "alice"), true},
		{"a gateway renews its lease", natsauth.Gateway, false, kv(store.BucketNodes, "gateway-1"), true},
		{"a gateway cannot forge a presence change", natsauth.Gateway, false, subject.UserEvents("alice"), false},
		{"a gateway cannot write presence state", natsauth.Gateway, false, kv(store.BucketPresence, "alice"), false},
		{"a gateway cannot change channels", natsauth.Gateway, false, kv(store.BucketChannels, "messaging.general"), false},
		{"a gateway cannot change members", natsauth.Gateway, false, kv(store.BucketMembers, "messaging.general.mallory"), false},
		{"a gateway cannot delete a stream", natsauth.Gateway, false, "$JS.API.STREAM.DELETE." + store.StreamInput, false},
		{"a gateway cannot purge a stream", natsauth.Gateway, false, "$JS.API.STREAM.PURGE.KV_" + store.BucketPresence, false},
		{"a gateway subscribes to presence events", natsauth.Gateway, true, subject.EventsAll, true},
		{"a gateway takes watch requests", natsauth.Gateway, true, subject.GatewayWatch("gateway-1"), true},
		{"a gateway cannot read the input", natsauth.Gateway, true, subject.InputAll, false},

		{"a worker publishes presence changes", natsauth.Worker, false, subject.UserEvents("alice"), true},
		{"a worker writes presence state", natsauth.Worker, false, kv(store.BucketPresence, "alice"), true},
		{"a worker cannot forge a connection event", natsauth.Worker, false, subject.ConnEvent("gateway-1", "mallory"), false},
		{"a worker cannot change users", natsauth.Worker, false, kv(store.BucketUsers, "alice"), false},
		{"a worker cannot change members", natsauth.Worker, false, kv(store.BucketMembers, "messaging.general.alice"), false},
		{"a worker lists a channel's members", natsauth.Worker, false, "$JS.API.CONSUMER.CREATE.KV_" + store.BucketMembers, true},

		{"an api node publishes channel events", natsauth.API, false, subject.ChannelEvents("messaging", "general"), true},
		{"an api node writes users", natsauth.API, false, kv(store.BucketUsers, "alice"), true},
		{"an api node writes members", natsauth.API, false, kv(store.BucketMembers, "messaging.general.alice"), true},
		{"an api node cannot forge a presence change", natsauth.API, false, subject.UserEvents("alice"), false},
		{"an api node cannot forge a connection event", natsauth.API, false, subject.ConnEvent("gateway-1", "mallory"), false},
		{"an api node cannot write presence state", natsauth.API, false, kv(store.BucketPresence, "alice"), false},

		{"an admin may do anything", natsauth.Admin, false, "$JS.API.STREAM.DELETE." + store.StreamInput, true},
	}
	admin := dial(t, url, natsauth.Admin, pw)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc := dial(t, url, tc.role, pw)
			var got bool
			if tc.sub {
				got = subscribed(t, admin, nc, tc.role, tc.subject)
			} else {
				got = published(t, admin, nc, tc.subject)
			}
			if got != tc.allowed {
				t.Errorf("%s on %s as %s: allowed=%v, want %v", map[bool]string{true: "subscribe", false: "publish"}[tc.sub], tc.subject, tc.role.User(), got, tc.allowed)
			}
		})
	}
}

func TestWrongPasswordIsRefused(t *testing.T) {
	url, _ := startServer(t)
	_, err := nats.Connect(url, nats.UserInfo(natsauth.Reader.User(), "wrong"), nats.MaxReconnects(0))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect with a wrong password: %v, want an authorization error", err)
	}
}
