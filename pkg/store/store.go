// Package store is Presence's system of record in JetStream: the input stream
// the workers consume and the KV buckets holding users, presence state,
// channels, their members, channel types, memberships and gateway node
// leases.
//
// Every write is a compare-and-set on the KV revision (Update), so any number
// of api nodes, gateways and workers may write the same key concurrently.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/subject"
)

// Names of the stream, the workers' consumer and the buckets.
const (
	StreamInput        = "PRESENCE_IN"
	StreamGrace        = "PRESENCE_GRACE"
	ConsumerWorkers    = "presence-workers"
	ConsumerGrace      = "presence-workers-grace"
	BucketUsers        = "presence_users"
	BucketPresence     = "presence_state"
	BucketChannels     = "presence_channels"
	BucketMembers      = "presence_members"
	BucketChannelTypes = "presence_channel_types"
	BucketMemberships  = "presence_memberships"
	BucketNodes        = "presence_nodes"
)

// Buckets are every KV bucket Presence keeps.
var Buckets = []string{BucketUsers, BucketPresence, BucketChannels, BucketMembers, BucketChannelTypes, BucketMemberships, BucketNodes}

// SentinelKey marks the presence state intact: a missing sentinel means the
// state was lost (bucket deleted or purged, writes lost) and must be rebuilt
// from the gateways. Its value is SentinelGenesis for a state that started
// empty with the system, or "rebuilt:<RFC 3339 time>" after a loss. User
// keys never hold a '.', so it cannot collide with a user.
const (
	SentinelKey     = "presence.sentinel"
	SentinelGenesis = "genesis"
)

// ErrNotFound is returned for a missing record.
var ErrNotFound = errors.New("not found")

// errUnchanged lets an update function say "nothing to write".
var errUnchanged = errors.New("unchanged")

// ErrUnchanged is returned by an Update function that has nothing to write;
// Update then returns the current value without writing.
var ErrUnchanged = errUnchanged

// Options for Setup.
type Options struct {
	// Replicas of the stream and buckets (1 on a single server, 3 in a cluster).
	Replicas int
	// ActiveInterval is how often gateways refresh live connections. The
	// input stream keeps twice that (plus a minute): a node's live
	// connections are found by reading its recent events. Zero means "not
	// known here": the stream is created with the default if missing and
	// otherwise left as the gateways and workers configured it.
	ActiveInterval time.Duration
	// SkipChannelTypes leaves the default channel types to others: for a
	// process whose NATS user may not write them (pkg/natsauth); the api
	// nodes create them.
	SkipChannelTypes bool
}

// DefaultActiveInterval is the gateways' default last_active refresh.
const DefaultActiveInterval = 15 * time.Minute

// InputMaxAge is how long input events are kept for an active interval.
func InputMaxAge(active time.Duration) time.Duration { return 2*active + time.Minute }

// Store holds the bound buckets.
type Store struct {
	JS           jetstream.JetStream
	Users        jetstream.KeyValue
	Presence     jetstream.KeyValue
	Channels     jetstream.KeyValue
	Members      jetstream.KeyValue
	ChannelTypes jetstream.KeyValue
	Memberships  jetstream.KeyValue
	Nodes        jetstream.KeyValue
}

// Setup creates or updates the stream and buckets and the default channel
// types (unless o.SkipChannelTypes). Safe to call from every process at
// start.
func Setup(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	active := o.ActiveInterval
	if active <= 0 {
		active = DefaultActiveInterval
	}
	maxAge := InputMaxAge(active)
	// A system whose input stream does not exist yet is new: its presence
	// state starts empty for real, not because it was lost.
	fresh := false
	if _, err := js.Stream(ctx, StreamInput); errors.Is(err, jetstream.ErrStreamNotFound) {
		fresh = true
	}
	for _, st := range []struct{ name, subjects string }{
		{StreamInput, subject.InputAll}, {StreamGrace, subject.GraceAll},
	} {
		cfg := jetstream.StreamConfig{
			Name:     st.name,
			Subjects: []string{st.subjects},
			Storage:  jetstream.FileStorage,
			Replicas: o.Replicas,
			MaxAge:   maxAge,
			// Deduplicate retried publishes for two minutes (JetStream's
			// limit is the stream's max age).
			Duplicates: min(2*time.Minute, maxAge),
			Discard:    jetstream.DiscardOld,
		}
		err := retry(ctx, func(ctx context.Context) error {
			var err error
			if o.ActiveInterval > 0 {
				_, err = js.CreateOrUpdateStream(ctx, cfg)
			} else if _, err = js.CreateStream(ctx, cfg); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("store: stream %s: %w", st.name, err)
		}
	}
	s := &Store{JS: js}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{
		{BucketUsers, &s.Users}, {BucketPresence, &s.Presence}, {BucketChannels, &s.Channels}, {BucketMembers, &s.Members},
		{BucketChannelTypes, &s.ChannelTypes}, {BucketMemberships, &s.Memberships}, {BucketNodes, &s.Nodes},
	} {
		err := retry(ctx, func(ctx context.Context) error {
			kv, err := js.CreateOrUpdateKeyValue(ctx, bucketConfig(b.name, o))
			*b.kv = kv
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("store: bucket %s: %w", b.name, err)
		}
	}
	if fresh {
		// Marks the presence state intact from the start (see Sentinel).
		if _, err := s.Presence.Create(ctx, SentinelKey, []byte(SentinelGenesis)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("store: presence sentinel: %w", err)
		}
	}
	if o.SkipChannelTypes {
		return s, nil
	}
	for _, ct := range model.DefaultChannelTypes(time.Now().UTC()) {
		b, _ := json.Marshal(ct)
		err := retry(ctx, func(ctx context.Context) error {
			if _, err := s.ChannelTypes.Create(ctx, ct.Name, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("store: default channel type %s: %w", ct.Name, err)
		}
	}
	return s, nil
}

func bucketConfig(name string, o Options) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage, Replicas: max(o.Replicas, 1)}
}

// RecreatePresence creates the presence bucket again after it was deleted,
// and nothing else: every other stream and bucket is there, and each
// creation racing the deletion on a cluster risks a bucket some servers do
// not know, so the fewer the better. It only creates: every worker may try
// at once, and an update racing the winner's creation left the cluster
// answering no stream info for the bucket (the chaos KV-loss test caught
// it), so a bucket found there already is taken as is.
func RecreatePresence(ctx context.Context, js jetstream.JetStream, o Options) error {
	return retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateKeyValue(ctx, bucketConfig(BucketPresence, o))
		if errors.Is(err, jetstream.ErrBucketExists) {
			return nil
		}
		return err
	})
}

// retry runs op until it succeeds, fails for good, or ctx ends. A new
// clustered JetStream is slow to elect leaders and answers concurrent
// creations with timeouts; those are worth retrying, a rejected
// configuration is not.
func retry(ctx context.Context, op func(ctx context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// errCodeClusterNoPeers is JetStream's "no suitable peers for placement".
const errCodeClusterNoPeers jetstream.ErrorCode = 10005

func transient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, nats.ErrConnectionReconnecting):
		return true
	case errors.As(err, &apiErr):
		// 503: JetStream or the cluster not ready; 500: e.g. no leader yet;
		// 10005: no peers for placement yet (a peer still joining).
		return apiErr.Code == 503 || apiErr.Code == 500 || apiErr.ErrorCode == errCodeClusterNoPeers
	}
	return false
}

// Open binds buckets created by Setup, waiting for them up to ctx's deadline.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	s := &Store{JS: js}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{
		{BucketUsers, &s.Users}, {BucketPresence, &s.Presence}, {BucketChannels, &s.Channels}, {BucketMembers, &s.Members},
		{BucketChannelTypes, &s.ChannelTypes}, {BucketMemberships, &s.Memberships}, {BucketNodes, &s.Nodes},
	} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("store: bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	return s, nil
}

// Key turns an id into a KV key. Ids may hold '@' and '!', which KV keys may
// not; they are escaped with '=' (never part of an id).
func Key(id string) string {
	if !strings.ContainsAny(id, "@!") {
		return id
	}
	return strings.NewReplacer("@", "=40", "!", "=21").Replace(id)
}

// ID reverses Key for user ids.
func ID(key string) string {
	if !strings.Contains(key, "=") {
		return key
	}
	return strings.NewReplacer("=40", "@", "=21", "!").Replace(key)
}

// ChannelKey is the key of a channel: "<type>.<id>".
func ChannelKey(typ, id string) string { return Key(typ) + "." + Key(id) }

// ChannelCID reverses ChannelKey into "type:id".
func ChannelCID(key string) string {
	typ, id, _ := strings.Cut(key, ".")
	return ID(typ) + ":" + ID(id)
}

// MemberKey is the key of user's member record in channel typ:id:
// "<type>.<id>.<user>". A channel's members are the keys under
// MembersOf(typ, id); a channel of 10,000 members is 10,000 small values,
// never one big one (NATS messages are at most 1 MB).
func MemberKey(typ, id, user string) string { return ChannelKey(typ, id) + "." + Key(user) }

// MembersOf is the key filter that lists the members of channel typ:id.
func MembersOf(typ, id string) string { return ChannelKey(typ, id) + ".*" }

// MemberOf reverses MemberKey into the channel's "type:id" and the user id;
// ok is false for a key of another shape.
func MemberOf(key string) (cid, user string, ok bool) {
	typ, rest, ok1 := strings.Cut(key, ".")
	id, u, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || typ == "" || id == "" || u == "" || strings.Contains(u, ".") {
		return "", "", false
	}
	return ID(typ) + ":" + ID(id), ID(u), true
}

// Get reads and decodes key. A missing key is ErrNotFound.
func Get[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, uint64, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, 0, ErrNotFound
	}
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, fmt.Errorf("store: decode %s/%s: %w", kv.Bucket(), key, err)
	}
	return v, e.Revision(), nil
}

// Update reads key, lets fn change the value (exists says whether it was
// there) and writes it back with compare-and-set, retrying on conflict. fn may
// run several times and must not have side effects. If fn returns
// ErrUnchanged nothing is written. Update returns the value and revision now
// stored and whether this call wrote it.
func Update[T any](ctx context.Context, kv jetstream.KeyValue, key string, fn func(v *T, exists bool) error) (T, uint64, bool, error) {
	return UpdateCached(ctx, kv, key, nil, fn)
}

// UpdateCached is Update starting from c's copy of the key, if it has one,
// instead of reading it (see Cache).
func UpdateCached[T any](ctx context.Context, kv jetstream.KeyValue, key string, c *Cache, fn func(v *T, exists bool) error) (T, uint64, bool, error) {
	for {
		var v T
		raw, rev, fromCache := c.get(key)
		exists := fromCache
		if !fromCache {
			e, err := kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return v, 0, false, err
			default:
				raw, rev, exists = e.Value(), e.Revision(), true
				c.put(key, raw, rev)
			}
		}
		if exists {
			if err := json.Unmarshal(raw, &v); err != nil {
				c.forget(key)
				return v, 0, false, fmt.Errorf("store: decode %s/%s: %w", kv.Bucket(), key, err)
			}
		}
		if err := fn(&v, exists); errors.Is(err, ErrUnchanged) {
			if fromCache {
				c.forget(key) // "nothing to do" is only believed of a fresh read
				c.retried(false)
				continue
			}
			return v, rev, false, nil
		} else if err != nil {
			return v, rev, false, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return v, 0, false, fmt.Errorf("store: encode %s/%s: %w", kv.Bucket(), key, err)
		}
		var newRev uint64
		if exists {
			newRev, err = kv.Update(ctx, key, b, rev)
		} else {
			newRev, err = kv.Create(ctx, key, b)
		}
		if err == nil {
			c.put(key, b, newRev)
			return v, newRev, true, nil
		}
		c.forget(key)
		if !IsConflict(err) {
			return v, 0, false, err
		}
		if ctx.Err() != nil {
			return v, 0, false, ctx.Err()
		}
		// Another writer won (or the cached copy was stale): read again and
		// reapply.
		c.retried(true)
	}
}

// NodesOn opens the nodes bucket (leases) on nc, a connection kept for
// leases alone so other traffic never delays them; with nc nil it is
// s.Nodes, on the store's own connection.
func (s *Store) NodesOn(ctx context.Context, nc *nats.Conn) (jetstream.KeyValue, error) {
	if nc == nil {
		return s.Nodes, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	// Retried like Setup's requests: on a cluster just formed, a request
	// can be lost while the routes settle (a worker of the chaos tests
	// once died of it at start).
	var kv jetstream.KeyValue
	err = retry(ctx, func(ctx context.Context) error {
		kv, err = js.KeyValue(ctx, BucketNodes)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: bucket %s: %w", BucketNodes, err)
	}
	return kv, nil
}

// IsConflict reports a lost compare-and-set: someone else wrote first.
func IsConflict(err error) bool {
	var apiErr *jetstream.APIError
	// Replicated buckets (R>1) answer a lost compare-and-set with the
	// "constant" variant of the code.
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// Follow calls apply for every entry of kv, then for every change, until ctx
// ends. It returns once the current entries are applied; stopped is closed
// when the watch has ended.
func Follow(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry)) (stopped <-chan struct{}, err error) {
	return follow(ctx, kv, apply, false)
}

// FollowChanges calls apply for every change of kv from now on (none of
// the current entries) until ctx ends; stopped is closed when the watch has
// ended.
func FollowChanges(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry)) (stopped <-chan struct{}, err error) {
	return follow(ctx, kv, apply, true)
}

// watchTries bounds the attempts to start a watch: about half a minute of
// JetStream API timeouts.
const watchTries = 5

func follow(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry), changesOnly bool) (<-chan struct{}, error) {
	var opts []jetstream.WatchOpt
	if changesOnly {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	// A watch is a consumer, and creating one times out while a cluster
	// that has just started elects its leaders: try a few times (ctx is
	// the watch's lifetime, so it cannot bound the tries itself).
	var w jetstream.KeyWatcher
	var err error
	backoff := 100 * time.Millisecond
	for try := 1; ; try++ {
		if w, err = kv.WatchAll(ctx, opts...); err == nil {
			break
		}
		if !transient(err) || try == watchTries || ctx.Err() != nil {
			return nil, fmt.Errorf("store: watch %s: %w", kv.Bucket(), err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("store: watch %s: %w", kv.Bucket(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer w.Stop()
		markReady := sync.OnceFunc(func() { close(ready) })
		defer markReady()
		if changesOnly {
			markReady() // nothing current to wait for
		}
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the current entries are all delivered
					markReady()
					continue
				}
				apply(e)
			}
		}
	}()
	select {
	case <-ready:
		return done, nil
	case <-ctx.Done():
		<-done
		return nil, ctx.Err()
	}
}
