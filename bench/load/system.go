package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Change is a presence change a watcher saw: User went online or offline,
// read at At. On the peer, presence is per connection: Client is the one
// that joined or left.
type Change struct {
	User   string
	Client string
	Online bool
	At     time.Time
}

// System is a measured server as its clients use it: Presence through the
// Stream SDK's protocol, or the centrifuge peer through centrifuge-js's.
// Channels are ids; a member of a channel is a user whose presence that
// channel's watchers see.
type System interface {
	// Name is "presence" or "centrifuge".
	Name() string
	// Setup makes the users members of their channels (channel id ->
	// members, watchers included). Presence creates the users and channels
	// through REST; the peer has nothing to create.
	Setup(ctx context.Context, channels map[string][]string) error
	// Member connects user (the i-th: it picks the source address) as a
	// member of channels. Presence knows the membership already; a peer
	// client subscribes to them, which is what makes it present there.
	Member(ctx context.Context, i int, user string, channels []string) (Socket, error)
	// Watch connects user as a watcher of channels; on gets every change of
	// their members it reads, from the socket's one goroutine.
	Watch(ctx context.Context, i int, user string, channels []string, on func(Change)) (Socket, error)
	// Backoff is the system's SDK reconnect backoff.
	Backoff(n int) time.Duration
}

// Presence is the Presence server (all-in-one) as SDK clients use it.
type Presence struct {
	REST    REST
	dialers []*Dialer
}

// NewPresence returns Presence at target (its /connect) and rest (its
// REST API), with sockets from the sources in turn (empty: any).
func NewPresence(target Target, rest REST, sources []string) *Presence {
	p := &Presence{REST: rest}
	for _, s := range sources {
		p.dialers = append(p.dialers, NewDialer(target, s))
	}
	if len(p.dialers) == 0 {
		p.dialers = []*Dialer{NewDialer(target, "")}
	}
	return p
}

func (p *Presence) Name() string { return "presence" }

// ChannelType is the type of the channels Presence benchmarks create.
const ChannelType = "messaging"

func (p *Presence) Setup(ctx context.Context, channels map[string][]string) error {
	seen := map[string]bool{}
	var users []string
	for _, members := range channels {
		for _, u := range members {
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	if err := p.REST.UpsertUsers(ctx, users); err != nil {
		return err
	}
	for id, members := range channels {
		if err := p.REST.CreateChannel(ctx, ChannelType, id, members[0], members); err != nil {
			return err
		}
	}
	return nil
}

func (p *Presence) Member(ctx context.Context, i int, user string, _ []string) (Socket, error) {
	return p.dialers[i%len(p.dialers)].DialFunc(ctx, user, nil)
}

var presenceChanged = []byte(`"user.presence.changed"`)

func (p *Presence) Watch(ctx context.Context, i int, user string, channels []string, on func(Change)) (Socket, error) {
	c, err := p.dialers[i%len(p.dialers)].DialFunc(ctx, user, func(_ *Conn, b []byte, at time.Time) {
		if !bytes.Contains(b, presenceChanged) {
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
			on(Change{User: ev.User.ID, Online: ev.User.Online, At: at})
		}
	})
	if err != nil {
		return nil, err
	}
	for _, ch := range channels {
		if err := p.REST.Watch(ctx, user, c.ID, ChannelType, ch); err != nil {
			c.Close()
			return nil, fmt.Errorf("watch %s: %w", ch, err)
		}
	}
	return c, nil
}

func (p *Presence) Backoff(n int) time.Duration { return StreamBackoff(n) }

// Centrifuge is the centrifuge peer as centrifuge-js clients use it.
type Centrifuge struct {
	dialers []*CentrifugeDialer
}

// NewCentrifuge returns the peer at url (its /connection/websocket), with
// tokens signed with secret and sockets from the sources in turn.
func NewCentrifuge(url, secret string, sources []string) *Centrifuge {
	c := &Centrifuge{}
	for _, s := range sources {
		c.dialers = append(c.dialers, NewCentrifugeDialer(url, secret, s))
	}
	if len(c.dialers) == 0 {
		c.dialers = []*CentrifugeDialer{NewCentrifugeDialer(url, secret, "")}
	}
	return c
}

func (c *Centrifuge) Name() string { return "centrifuge" }

func (c *Centrifuge) Setup(context.Context, map[string][]string) error { return nil }

func (c *Centrifuge) Member(ctx context.Context, i int, user string, channels []string) (Socket, error) {
	return c.dialers[i%len(c.dialers)].Dial(ctx, user, channels, nil)
}

// Watch subscribes the watcher to channels: a join is its member going
// online there, a leave offline. The watcher's own join is not a change.
func (c *Centrifuge) Watch(ctx context.Context, i int, user string, channels []string, on func(Change)) (Socket, error) {
	return c.dialers[i%len(c.dialers)].Dial(ctx, user, channels, func(_ *CentrifugeConn, jl JoinLeave, at time.Time) {
		if jl.User != user {
			on(Change{User: jl.User, Client: jl.Client, Online: jl.Join, At: at})
		}
	})
}

func (c *Centrifuge) Backoff(n int) time.Duration { return CentrifugeBackoff(n) }
