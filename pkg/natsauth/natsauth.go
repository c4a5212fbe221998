// Package natsauth says who may publish and subscribe what on Presence's NATS:
// one role per kind of client, each allowed only the subjects it needs. It is
// the one definition of those permissions: the all-in-one's embedded server
// takes its users from here, and deploy/nats/auth.conf (docker-compose.yml,
// make cluster) is generated from it (see Conf).
//
// The roles:
//   - gateway: publishes connection events, visibility commands and lease
//     renewals; reads users; subscribes to presence events and its control
//     subjects.
//   - worker: consumes the input streams, writes presence state, publishes
//     presence events and held closes; reads channels' members (resync).
//   - api: writes users, channels, members, memberships and channel types; publishes
//     visibility commands and channel events; asks gateways to add watches;
//     answers presence queries.
//   - reader: for other backend services; subscribes to presence events and
//     asks presence queries, and publishes nothing else, so it can never
//     forge a connection event or a presence change.
//   - admin: everything, for operators and their tools.
//
// Each service role has an inbox prefix of its own (Inbox), so no other user
// can read the answers it gets.
package natsauth

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"

	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// Role is one kind of NATS client and the subjects it may use.
type Role struct {
	// Name is the role's short name ("gateway"); its NATS user is
	// "presence-" + Name.
	Name string
	// Publish and Subscribe are the subjects allowed; nil Publish means
	// nothing may be published.
	Publish   []string
	Subscribe []string
	// Responses lets the role answer requests it received (NATS's
	// allow_responses), whatever their reply subject.
	Responses bool
	// All grants every subject (the admin role).
	All bool
}

// User is the role's default NATS user name.
func (r Role) User() string { return "presence-" + r.Name }

// Inbox is the inbox prefix the role's connections use; only that role may
// subscribe to it. Roles outside Presence (reader, admin) keep NATS's
// default, so the nats CLI works with them.
func (r Role) Inbox() string {
	if r.All || r.Name == Reader.Name {
		return "_INBOX"
	}
	return "_INBOX_" + r.Name
}

// PasswordVar is the environment variable deploy/nats/auth.conf reads the
// role's password from.
func (r Role) PasswordVar() string {
	return "PRESENCE_NATS_" + strings.ToUpper(r.Name) + "_PASSWORD"
}

// The roles.
var (
	Gateway = Role{
		Name: "gateway",
		Publish: slices.Concat(
			jetStream(),
			kvWrite(store.BucketUsers, store.BucketNodes),
			[]string{sentinel, subject.ConnEventsAll, subject.UserCommandsAll, subject.NodeEventsAll, subject.GatewayAliveAll, subject.Resync},
		),
		Subscribe: []string{
			"_INBOX_gateway.>", subject.EventsAll, subject.GatewayWatchAll, subject.Reannounce,
		},
		Responses: true, // answers watch requests
	}
	Worker = Role{
		Name: "worker",
		Publish: slices.Concat(
			jetStream(),
			kvWrite(store.BucketPresence, store.BucketNodes),
			[]string{subject.EventsAll, subject.GraceAll, subject.NodeEventsAll, subject.Reannounce},
		),
		Subscribe: []string{"_INBOX_worker.>", subject.GatewayAliveAll, subject.Resync},
	}
	API = Role{
		Name: "api",
		Publish: slices.Concat(
			jetStream(),
			kvWrite(store.BucketUsers, store.BucketChannels, store.BucketMembers, store.BucketChannelTypes, store.BucketMemberships),
			[]string{sentinel, subject.UserCommandsAll, subject.ChannelEventsAll, subject.GatewayWatchAll},
		),
		Subscribe: []string{"_INBOX_api.>", subject.QueryAll, subject.ServiceAll},
		Responses: true, // answers presence queries
	}
	Reader = Role{
		Name:      "reader",
		Publish:   []string{subject.QueryAll, subject.ServiceAll},
		Subscribe: []string{"_INBOX.>", subject.EventsAll},
	}
	Admin = Role{Name: "admin", All: true}
)

// Roles are every role, in the order Conf lists them.
var Roles = []Role{Gateway, Worker, API, Reader, Admin}

// streams are the JetStream streams Presence owns: its input streams and the
// streams behind its KV buckets.
func streams() []string {
	s := []string{store.StreamInput, store.StreamGrace}
	for _, b := range store.Buckets {
		s = append(s, "KV_"+b)
	}
	return s
}

// jetStream is what a service needs of the JetStream API for Presence's own
// streams: create and update them at start-up, read messages, and run
// consumers (the workers' durable ones, the watches' ephemeral ones), with
// their acks and flow control. Deleting or purging a stream is not among it.
func jetStream() []string {
	subs := []string{"$JS.API.INFO"}
	for _, s := range streams() {
		subs = append(subs,
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.STREAM.CREATE."+s,
			"$JS.API.STREAM.UPDATE."+s,
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.DIRECT.GET."+s,
			"$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.CONSUMER.*."+s,        // CREATE (unnamed), NAMES, LIST
			"$JS.API.CONSUMER.*."+s+".>",   // CREATE, INFO, DELETE of a named one
			"$JS.API.CONSUMER.*.*."+s+".>", // MSG.NEXT, DURABLE.CREATE
			"$JS.ACK."+s+".>",
			"$JS.FC."+s+".>",
		)
	}
	return subs
}

// sentinel is the presence bucket's sentinel key, which whichever service
// creates the input stream writes (store.Setup); the rest of that bucket is
// the workers'.
const sentinel = "$KV." + store.BucketPresence + "." + store.SentinelKey

// kvWrite is the subjects that write the keys of buckets.
func kvWrite(buckets ...string) []string {
	var subs []string
	for _, b := range buckets {
		subs = append(subs, "$KV."+b+".>")
	}
	return subs
}

// Permissions are r's permissions as the NATS server takes them.
func (r Role) Permissions() *server.Permissions {
	if r.All {
		return nil // no restriction
	}
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: r.Publish},
		Subscribe: &server.SubjectPermission{Allow: r.Subscribe},
	}
	if len(r.Publish) == 0 {
		p.Publish = &server.SubjectPermission{Deny: []string{">"}}
	}
	if r.Responses {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return p
}

// Passwords maps a role's name to its password.
type Passwords map[string]string

// ServerUsers are the users for an embedded server: every role with a
// password in pw. The server keeps only bcrypt hashes of the passwords, at
// bcrypt's lowest cost: they are long and random, and every connect checks
// one.
func ServerUsers(pw Passwords) ([]*server.User, error) {
	var users []*server.User
	for _, r := range Roles {
		if p := pw[r.Name]; p != "" {
			hash, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			if err != nil {
				return nil, fmt.Errorf("natsauth: %s password: %w", r.Name, err)
			}
			users = append(users, &server.User{Username: r.User(), Password: string(hash), Permissions: r.Permissions()})
		}
	}
	return users, nil
}

// Conf is deploy/nats/auth.conf: every role as a nats-server config user,
// its password read from the environment (PasswordVar).
func Conf() string {
	var b strings.Builder
	b.WriteString("# Generated from pkg/natsauth (go test ./cluster -run TestNATSAuthConf -update-auth): do not edit.\n")
	b.WriteString("# Presence's NATS users and what each may publish and subscribe; passwords\n")
	b.WriteString("# come from the environment. Included by nats.conf.\n\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, r := range Roles {
		fmt.Fprintf(&b, "    {\n      user: %q\n      password: $%s\n", r.User(), r.PasswordVar())
		if !r.All {
			b.WriteString("      permissions: {\n")
			if len(r.Publish) == 0 {
				b.WriteString("        publish: { deny: [\">\"] }\n")
			} else {
				writeList(&b, "publish", r.Publish)
			}
			writeList(&b, "subscribe", r.Subscribe)
			if r.Responses {
				b.WriteString("        allow_responses: true\n")
			}
			b.WriteString("      }\n")
		}
		b.WriteString("    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func writeList(b *strings.Builder, name string, subs []string) {
	fmt.Fprintf(b, "        %s: { allow: [\n", name)
	for _, s := range subs {
		fmt.Fprintf(b, "          %q\n", s)
	}
	b.WriteString("        ] }\n")
}

// ViolationLog is a slog handler for a process that runs an embedded NATS
// server (natsserver.Options.Log): it keeps the permission violations the
// server reports, for tests to fail on (a subject a service uses without a
// grant), and passes every record on.
type ViolationLog struct {
	next slog.Handler
	seen *violations
}

type violations struct {
	mu   sync.Mutex
	msgs []string
}

// NewViolationLog returns a ViolationLog passing records on to next.
func NewViolationLog(next slog.Handler) *ViolationLog {
	return &ViolationLog{next: next, seen: &violations{}}
}

// Enabled takes warnings and errors (violations are errors) and whatever
// next takes.
func (v *ViolationLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || v.next.Enabled(ctx, l)
}

// Handle records a violation and passes r on.
func (v *ViolationLog) Handle(ctx context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.Value.String(); return true })
	if strings.Contains(msg, "Violation") {
		v.seen.mu.Lock()
		v.seen.msgs = append(v.seen.msgs, msg)
		v.seen.mu.Unlock()
	}
	if !v.next.Enabled(ctx, r.Level) {
		return nil
	}
	return v.next.Handle(ctx, r)
}

// WithAttrs and WithGroup keep recording into the same list.
func (v *ViolationLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ViolationLog{next: v.next.WithAttrs(attrs), seen: v.seen}
}

func (v *ViolationLog) WithGroup(name string) slog.Handler {
	return &ViolationLog{next: v.next.WithGroup(name), seen: v.seen}
}

// Seen is every violation recorded so far.
func (v *ViolationLog) Seen() []string {
	v.seen.mu.Lock()
	defer v.seen.mu.Unlock()
	return slices.Clone(v.seen.msgs)
}
