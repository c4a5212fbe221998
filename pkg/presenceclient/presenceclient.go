// Package presenceclient is Presence for another Go service: who is online,
// asked over NATS, and their presence changes as they happen. It needs only
// a NATS connection, as Presence's read-only user (presence-reader) will do:
//
//	nc, _ := nats.Connect(url, nats.UserInfo("presence-reader", password))
//	pc := presenceclient.New(nc)
//	users, err := pc.Get(ctx, []string{"alice", "bob"})
//
// The subjects and payloads are documented in docs/nats.md.
package presenceclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/subject"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrInvalid: the query was refused as malformed (an id that is not a
	// valid user id, too many ids, a bad channel).
	ErrInvalid = errors.New("presenceclient: invalid query")
	// ErrNotFound: the channel does not exist.
	ErrNotFound = errors.New("presenceclient: not found")
	// ErrUnavailable: no Presence api node answered in time.
	ErrUnavailable = errors.New("presenceclient: presence unavailable")
)

// MaxIDs is how many users one Get may ask for.
const MaxIDs = 1000

// User is a user as another user sees them: an invisible user reads
// offline. Fields holds every field of the user's JSON, custom ones too.
type User struct {
	ID         string         `json:"id"`
	Online     bool           `json:"online"`
	LastActive time.Time      `json:"last_active"`
	Status     string         `json:"status,omitempty"`
	Name       string         `json:"name,omitempty"`
	Fields     map[string]any `json:"-"`
}

func (u *User) UnmarshalJSON(b []byte) error {
	type plain User
	if err := json.Unmarshal(b, (*plain)(u)); err != nil {
		return err
	}
	return json.Unmarshal(b, &u.Fields)
}

// Event is a user.presence.changed (or user.updated) event, the JSON the
// SDK receives, with the version that orders one user's events.
type Event struct {
	Type      string    `json:"type"`
	User      User      `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	// Version increases with each of the user's events.
	Version uint64 `json:"-"`
}

// Client asks Presence over NATS.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

// Option tunes a Client.
type Option func(*Client)

// WithTimeout bounds each query when the context has no deadline (5 s by
// default).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a Client on nc.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc, timeout: 5 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Get returns the presence of ids (at most MaxIDs), keyed by id; users
// Presence does not know are absent.
func (c *Client) Get(ctx context.Context, ids []string) (map[string]User, error) {
	if len(ids) == 0 {
		return map[string]User{}, nil
	}
	if len(ids) > MaxIDs {
		return nil, fmt.Errorf("%w: %d ids, at most %d", ErrInvalid, len(ids), MaxIDs)
	}
	var reply struct {
		Users []User `json:"users"`
	}
	if err := c.request(ctx, subject.QueryPrefix+".users", map[string]any{"ids": ids}, &reply); err != nil {
		return nil, err
	}
	out := make(map[string]User, len(reply.Users))
	for _, u := range reply.Users {
		out[u.ID] = u
	}
	return out, nil
}

// OnlineMembers returns the members of a channel who are online now.
func (c *Client) OnlineMembers(ctx context.Context, channelType, channelID string) ([]User, error) {
	var reply struct {
		Online []User `json:"online"`
	}
	if err := c.request(ctx, subject.QueryPrefix+".channel", map[string]any{"type": channelType, "id": channelID}, &reply); err != nil {
		return nil, err
	}
	return reply.Online, nil
}

func (c *Client) request(ctx context.Context, subj string, req, reply any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("presenceclient: %w", err)
	}
	msg, err := c.nc.RequestWithContext(ctx, subj, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case err != nil:
		return fmt.Errorf("presenceclient: %s: %w", subj, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		desc := msg.Header.Get(micro.ErrorHeader)
		switch code {
		case "400":
			return fmt.Errorf("%w: %s", ErrInvalid, desc)
		case "404":
			return fmt.Errorf("%w: %s", ErrNotFound, desc)
		}
		return fmt.Errorf("presenceclient: %s: %s %s", subj, code, desc)
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("presenceclient: %s: reply: %w", subj, err)
	}
	return nil
}

// Watch delivers the presence events of users until ctx ends, when the
// channel is closed. Each user's events arrive in order, each once: a copy
// or an older event is dropped (by its version). Events are at most once,
// like everything relayed: after a gap (a NATS reconnect), Get tells the
// current state.
func (c *Client) Watch(ctx context.Context, users ...string) (<-chan Event, error) {
	for _, u := range users {
		if err := subject.CheckUserID(u); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	in := make(chan *nats.Msg, 1024)
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for _, u := range users {
		s, err := c.nc.ChanSubscribe(subject.UserEvents(u), in)
		if err != nil {
			unsubscribe()
			return nil, fmt.Errorf("presenceclient: watch %s: %w", u, err)
		}
		subs = append(subs, s)
	}
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer unsubscribe()
		last := map[string]uint64{}
		for {
			select {
			case <-ctx.Done():
				return
			case msg := <-in:
				m, ok := event.ReadMeta(msg)
				if !ok || m.Version <= last[m.User] {
					continue
				}
				var ev Event
				if json.Unmarshal(msg.Data, &ev) != nil {
					continue
				}
				last[m.User], ev.Version = m.Version, m.Version
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
