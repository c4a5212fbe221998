// Package route decides where a user's events go: the user's own subject plus
// the subject of each channel the user is a member of whose channel type has
// presence (connect_events) on. Workers, api nodes and gateways all route the
// same way through this package.
package route

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// Router routes events, keeping channel types current from a KV watch.
type Router struct {
	st *store.Store

	mu    sync.RWMutex
	types map[string]model.ChannelType

	stopped <-chan struct{}
}

// New starts watching channel types; the watch ends with ctx (Stopped tells
// when).
func New(ctx context.Context, st *store.Store) (*Router, error) {
	r := &Router{st: st, types: map[string]model.ChannelType{}}
	stopped, err := store.Follow(ctx, st.ChannelTypes, r.apply)
	if err != nil {
		return nil, err
	}
	r.stopped = stopped
	return r, nil
}

// Stopped is closed once the router's watch has ended.
func (r *Router) Stopped() <-chan struct{} { return r.stopped }

func (r *Router) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(r.types, e.Key())
		return
	}
	var ct model.ChannelType
	if json.Unmarshal(e.Value(), &ct) == nil {
		r.types[e.Key()] = ct
	}
}

// PresenceEnabled reports whether channels of type carry presence events.
func (r *Router) PresenceEnabled(channelType string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.types[channelType].ConnectEvents
}

// OpenReadTypes are the channel types whose channels every user may read.
func (r *Router) OpenReadTypes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for name, ct := range r.types {
		if ct.OpenReads {
			out = append(out, name)
		}
	}
	return out
}

// PresenceChannels picks, of a user's channels, those with presence enabled.
func (r *Router) PresenceChannels(ms model.Memberships) []string {
	var out []string
	for _, cid := range ms.CIDs {
		typ, _, _ := strings.Cut(cid, ":")
		if r.PresenceEnabled(typ) {
			out = append(out, cid)
		}
	}
	return out
}
