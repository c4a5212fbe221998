package subject_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// idKind is one of the checks ids pass before they become part of a subject.
type idKind struct {
	name  string
	check func(string) error
	max   int
	// separators are characters that split this id from another elsewhere:
	// an accepted id containing one would be read back wrong.
	separators string
}

// Every id is safe in a subject (no '.', '*', '>', blank or control), and in
// a KV key once store.Key has escaped it ('=' is Key's escape). Beyond that:
// a cid is "type:id"; a distinct channel's id hashes its member ids joined
// by ','; a connection id is "node~epoch~seq".
var idKinds = []idKind{
	{"user id", subject.CheckUserID, subject.MaxUserIDLen, ".*>=:,"},
	{"channel type", subject.CheckChannelType, subject.MaxChannelTypeLen, ".*>=:"},
	{"channel id", subject.CheckChannelID, subject.MaxChannelIDLen, ".*>=:"},
	{"node name", subject.CheckNode, subject.MaxNodeLen, ".*>=~"},
}

// validKey is the KV key syntax of nats.go's jetstream package (validKeyRe).
var validKey = regexp.MustCompile(`\A[-/_=.a-zA-Z0-9]+\z`)

// FuzzCheckIDs: every kind of id check, on two fuzzed strings. An error is
// ErrInvalidID; an accepted id is non-empty, within its length, printable
// ASCII without blanks and without the characters that separate it from
// its neighbours. Every subject built of accepted ids is a valid literal
// NATS subject with the ids as its own tokens, the parsers give the ids
// back, and store.Key makes a valid KV key that store.ID reverses.
func FuzzCheckIDs(f *testing.F) {
	for _, seed := range [][2]string{
		{"ann", "gateway-1"},
		{"jo_hn-1@example!x", "!members-0123456789abcdef"},
		{"messaging", "general"},
		{"", "a"},
		{"a.b", "a*"},
		{">", "a b"},
		{"a\tb", "a\x00b"},
		{"jöhn", "\u00a0"},
		{"a:b", "a~b"},
		{"a=40", "a,b"},
		{strings.Repeat("a", subject.MaxUserIDLen), strings.Repeat("b", subject.MaxNodeLen)},
		{strings.Repeat("a", subject.MaxUserIDLen+1), strings.Repeat("b", subject.MaxNodeLen+1)},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ok := map[string][2]bool{}
		for _, k := range idKinds {
			var accepted [2]bool
			for i, id := range []string{a, b} {
				err := k.check(id)
				if err != nil {
					if !errors.Is(err, subject.ErrInvalidID) {
						t.Fatalf("%s %q: error %v is not ErrInvalidID", k.name, id, err)
					}
					continue
				}
				accepted[i] = true
				if msg := unsafeID(id, k); msg != "" {
					t.Fatalf("%s %q accepted, but %s", k.name, id, msg)
				}
				if key := store.Key(id); !validKey.MatchString(key) || store.ID(key) != id {
					t.Fatalf("%s %q: store key %q is invalid or store.ID gives %q back", k.name, id, key, store.ID(key))
				}
			}
			ok[k.name] = accepted
		}

		user, node := ok["user id"], ok["node name"]
		if user[0] && node[1] {
			literal(t, subject.ConnEvent(b, a), "presence", "in", "conn", b, a)
			literal(t, subject.GraceClose(b, a), "presence", "grace", b, a)
			if !subject.IsGraceClose(subject.GraceClose(b, a)) || subject.IsGraceClose(subject.ConnEvent(b, a)) {
				t.Fatalf("IsGraceClose mistakes the close of %q on %q", a, b)
			}
		}
		if user[0] {
			literal(t, subject.UserCommand(a), "presence", "in", "user", a)
			s := subject.UserEvents(a)
			literal(t, s, "presence", "events", "user", a)
			if u, cid, ok := subject.ParseEvents(s); !ok || u != a || cid != "" {
				t.Fatalf("ParseEvents(%q) = %q, %q, %v; want the user %q", s, u, cid, ok, a)
			}
		}
		if node[1] {
			literal(t, subject.NodeEvent(b), "presence", "in", "node", b)
			literal(t, subject.GatewayWatch(b), "presence", "gateway", b, "watch")
			s := subject.GatewayAlive(b)
			literal(t, s, "presence", "gateway", b, "alive")
			if n, ok := subject.ParseGatewayAlive(s); !ok || n != b {
				t.Fatalf("ParseGatewayAlive(%q) = %q, %v; want %q", s, n, ok, b)
			}
			if all := subject.ConnEventsOfNode(b); !server.IsValidSubject(all) || !server.SubjectMatchesFilter(subject.ConnEvent(b, "ann"), all) {
				t.Fatalf("ConnEventsOfNode(%q) = %q does not match the node's connection events", b, all)
			}
		}
		if ok["channel type"][0] && ok["channel id"][1] {
			s := subject.ChannelEvents(a, b)
			literal(t, s, "presence", "events", "channel", a, b)
			u, cid, ok := subject.ParseEvents(s)
			if !ok || u != "" || cid != a+":"+b {
				t.Fatalf("ParseEvents(%q) = %q, %q, %v; want the channel %s:%s", s, u, cid, ok, a, b)
			}
			if typ, id, err := subject.ParseCID(cid); err != nil || typ != a || id != b {
				t.Fatalf("ParseCID(%q) = %q, %q, %v", cid, typ, id, err)
			}
			key := store.ChannelKey(a, b)
			if !validKey.MatchString(key) || store.ChannelCID(key) != cid {
				t.Fatalf("channel %s: key %q is invalid or reads back as %q", cid, key, store.ChannelCID(key))
			}
		}
	})
}

// unsafeID says what makes an accepted id unsafe, or "".
func unsafeID(id string, k idKind) string {
	switch {
	case id == "":
		return "it is empty"
	case len(id) > k.max:
		return "it is too long"
	case strings.ContainsAny(id, k.separators):
		return "it holds one of " + k.separators
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return "it holds a blank, control or non-ASCII byte"
		}
	}
	return ""
}

// literal fails unless subj is a valid literal subject of exactly tokens.
func literal(t *testing.T, subj string, tokens ...string) {
	t.Helper()
	if !server.IsValidPublishSubject(subj) {
		t.Fatalf("subject %q is not a valid literal subject", subj)
	}
	if got := strings.Split(subj, "."); strings.Join(got, "|") != strings.Join(tokens, "|") || len(got) != len(tokens) {
		t.Fatalf("subject %q has tokens %q, want %q", subj, got, tokens)
	}
}

// FuzzParseSubjects: the parsers of subjects and cids never panic, and what
// they accept is read back exactly: building the subject (or cid) again
// from the parts gives the input.
func FuzzParseSubjects(f *testing.F) {
	for _, s := range []string{
		"presence.events.user.ann",
		"presence.events.user.",
		"presence.events.user.a.b",
		"presence.events.channel.messaging.general",
		"presence.events.channel.messaging",
		"presence.events.channel..x",
		"presence.events.channel.a.b.c",
		"presence.gateway.gateway-1.alive",
		"presence.gateway.a.b.alive",
		"presence.gateway..alive",
		"messaging:general",
		"messaging:a:b",
		":general",
		"presence.events.>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if user, cid, ok := subject.ParseEvents(s); ok {
			switch {
			case user != "" && cid != "":
				t.Fatalf("ParseEvents(%q) read both a user %q and a channel %q", s, user, cid)
			case user != "":
				if subject.UserEvents(user) != s {
					t.Fatalf("ParseEvents(%q) read user %q, whose subject is %q", s, user, subject.UserEvents(user))
				}
			default:
				typ, id, found := strings.Cut(cid, ":")
				if !found || typ == "" || id == "" || subject.ChannelEvents(typ, id) != s {
					t.Fatalf("ParseEvents(%q) read channel %q, whose subject is %q", s, cid, subject.ChannelEvents(typ, id))
				}
			}
		}
		if node, ok := subject.ParseGatewayAlive(s); ok {
			if subject.CheckNode(node) != nil || subject.GatewayAlive(node) != s {
				t.Fatalf("ParseGatewayAlive(%q) read node %q, whose heartbeat is %q", s, node, subject.GatewayAlive(node))
			}
		}
		typ, id, err := subject.ParseCID(s)
		if err != nil {
			if !errors.Is(err, subject.ErrInvalidID) {
				t.Fatalf("ParseCID(%q): error %v is not ErrInvalidID", s, err)
			}
			return
		}
		if typ+":"+id != s || subject.CheckChannelType(typ) != nil || subject.CheckChannelID(id) != nil {
			t.Fatalf("ParseCID(%q) = %q, %q: not the cid's parts, or not valid ones", s, typ, id)
		}
	})
}
