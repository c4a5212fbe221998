// Package hostile is clients that misbehave against a running Presence:
// floods of health checks, frames past the size limit, garbage and binary
// frames, sockets that watch users and never read, connects stalled
// mid-handshake, tokens of every wrong kind and queries built to be slow.
// The same attackers serve a test that asserts the server defends itself
// (bench/hostile's own test) and the benchmark that measures what they cost
// well-behaved clients (presence-bench's hostile scenario), so the two
// always speak of the same attack.
//
// Each attacker runs until its context ends, coming back when the server
// cuts it off (a real misbehaving client reconnects too), and returns an
// Outcome: what the server did to it. Attackers name their own source
// address in X-Forwarded-For (Source), so a server that trusts the
// attackers' loopback as a proxy applies its per-address limits to each.
package hostile

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehq/presence/bench/load"
)

// Target is the Presence under attack. Deaf sockets watch users through
// REST (queryUsers with presence: true and their connection id, as the
// SDK does): it needs nothing a deployment's clients lack, in-process or
// not.
type Target struct {
	// WSURL is the connect endpoint, ws://host:port/connect.
	WSURL string
	// HTTPURL is the REST API's base, http://host:port.
	HTTPURL string
	Key     string
	Secret  string
}

func (t Target) rest() load.REST { return load.REST{Base: t.HTTPURL, Key: t.Key, Secret: t.Secret} }

// Kind is a kind of attacker.
type Kind string

// The kinds of attacker, one function each.
const (
	KindFlood       Kind = "flood"        // Flood
	KindOversized   Kind = "oversized"    // Oversized
	KindGarbage     Kind = "garbage"      // Garbage
	KindDeaf        Kind = "deaf"         // Deaf
	KindStall       Kind = "stall"        // Stall
	KindBadTokens   Kind = "bad-tokens"   // BadTokens
	KindSlowQueries Kind = "slow-queries" // SlowQueries
)

// NoCloseFrame stands in Outcome.Closed for a connection the server ended
// without a WebSocket close frame (a stalled handshake has no WebSocket
// yet); it is what websocket.CloseStatus says of such an end.
const NoCloseFrame websocket.StatusCode = -1

// Outcome is what happened to one attacker by the time its context ended.
type Outcome struct {
	Kind Kind
	// Name is its user id, and picks its source address.
	Name string
	// Sockets is how many connections it opened (handshakes begun, for
	// Stall).
	Sockets int
	// Sent is how many frames, connects or queries it sent.
	Sent int
	// Closed counts the connections the server ended while the attack ran,
	// by the close code it sent (NoCloseFrame: none). A connection the
	// attacker itself closed when its context ended is not counted.
	Closed map[websocket.StatusCode]int
	// LetIn counts connects with a bad token the server answered with
	// connection.ok (BadTokens): it must stay 0.
	LetIn int
	// Unanswered counts queries that got no answer at all while the attack
	// ran (SlowQueries): it must stay 0.
	Unanswered int
	// Err is the first thing that kept the attacker from doing its part:
	// a connect refused, a watch that failed, a query unanswered. Nil when
	// it attacked all along.
	Err error
}

func newOutcome(k Kind, name string) Outcome {
	return Outcome{Kind: k, Name: name, Closed: map[websocket.StatusCode]int{}}
}

// fail keeps err as the first failure, unless the attack is over (then the
// failure is the attacker's own context ending).
func (o *Outcome) fail(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil && o.Err == nil {
		o.Err = err
	}
}

// closed counts a connection the server ended with code.
func (o *Outcome) closed(ctx context.Context, code websocket.StatusCode) {
	if ctx.Err() == nil {
		o.Closed[code]++
	}
}

func (o Outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d sent", o.Name, o.Sent)
	if o.Sockets > 0 {
		fmt.Fprintf(&b, " over %d connections", o.Sockets)
	}
	for _, c := range slices.Sorted(maps.Keys(o.Closed)) {
		if c == NoCloseFrame {
			fmt.Fprintf(&b, ", dropped %d× without a close frame", o.Closed[c])
		} else {
			fmt.Fprintf(&b, ", closed %d× with %d", o.Closed[c], c)
		}
	}
	if o.LetIn > 0 {
		fmt.Fprintf(&b, ", %d bad tokens let in", o.LetIn)
	}
	if o.Unanswered > 0 {
		fmt.Fprintf(&b, ", %d queries unanswered", o.Unanswered)
	}
	if o.Err != nil {
		fmt.Fprintf(&b, ", first failure: %v", o.Err)
	}
	return b.String()
}

// ByKind sums outs per kind, in the order kinds first appear: one line
// each to report an attack of dozens. Name says how many attackers a sum
// holds; Err is the first of theirs.
func ByKind(outs []Outcome) []Outcome {
	var sums []Outcome
	at := map[Kind]int{}
	n := map[Kind]int{}
	for _, o := range outs {
		i, ok := at[o.Kind]
		if !ok {
			i = len(sums)
			at[o.Kind] = i
			sums = append(sums, newOutcome(o.Kind, ""))
		}
		n[o.Kind]++
		s := &sums[i]
		s.Sockets += o.Sockets
		s.Sent += o.Sent
		for c, k := range o.Closed {
			s.Closed[c] += k
		}
		s.LetIn += o.LetIn
		s.Unanswered += o.Unanswered
		if s.Err == nil {
			s.Err = o.Err
		}
	}
	for i := range sums {
		sums[i].Name = fmt.Sprintf("%d× %s", n[sums[i].Kind], sums[i].Kind)
	}
	return sums
}

// Mix is how many attackers of each kind Attack runs.
type Mix struct {
	Flooders, Oversized, Garbage, Deaf, Stalled, BadTokens, SlowQueries int
	// Watched are the users every deaf socket watches: the well-behaved
	// ones, so each of their changes is queued for sockets that never read.
	// They must exist.
	Watched []string
}

// DefaultMix is the attack the test and the benchmark run: a few of each
// active kind, and forty of each kind that only holds a socket.
func DefaultMix(watched []string) Mix {
	return Mix{Flooders: 4, Oversized: 2, Garbage: 4, Deaf: 40, Stalled: 40, BadTokens: 2, SlowQueries: 2, Watched: watched}
}

// Attack runs m's attackers against t until ctx ends and returns their
// outcomes once every one of them has stopped, in the order of Mix's fields.
func Attack(ctx context.Context, t Target, m Mix) []Outcome {
	type squad struct {
		n    int
		kind Kind
		run  func(ctx context.Context, t Target, name string) Outcome
	}
	squads := []squad{
		{m.Flooders, KindFlood, Flood},
		{m.Oversized, KindOversized, Oversized},
		{m.Garbage, KindGarbage, Garbage},
		{m.Deaf, KindDeaf, func(ctx context.Context, t Target, name string) Outcome { return Deaf(ctx, t, name, m.Watched) }},
		{m.Stalled, KindStall, Stall},
		{m.BadTokens, KindBadTokens, BadTokens},
		{m.SlowQueries, KindSlowQueries, SlowQueries},
	}
	var out []Outcome
	for _, s := range squads {
		out = append(out, make([]Outcome, s.n)...)
	}
	var wg sync.WaitGroup
	i := 0
	for _, s := range squads {
		for k := range s.n {
			at := i
			wg.Go(func() { out[at] = s.run(ctx, t, fmt.Sprintf("%s-%d", s.kind, k)) })
			i++
		}
	}
	wg.Wait()
	return out
}

// Source is the address an attacker named name claims in X-Forwarded-For:
// one of 10.0.0.0/8, the same for the same name.
func Source(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	n := h.Sum32()
	return fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)
}

// comeBack is how long an attacker the server cut off waits before it
// connects again: the Stream SDK's shortest reconnect wait, so it comes
// back as often as a client that follows the SDK can.
const comeBack = 250 * time.Millisecond

// pause waits d or until ctx ends; false when ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
