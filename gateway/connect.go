package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/connid"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/token"

	"github.com/presencehq/presence/gateway/socket"
)

// Bounds on what a client sends.
const (
	maxConnectJSON = 16 << 10 // the json query parameter
	maxMessage     = 4 << 10  // one client message (health checks are tiny)
)

// connectRequest is the SDK's "json" query parameter.
type connectRequest struct {
	UserID      string         `json:"user_id"`
	UserDetails map[string]any `json:"user_details"`
}

// conn is one accepted socket.
type conn struct {
	g     *Gateway
	id    string
	seq   uint64
	epoch uint64
	user  string
	// grace is set when the node drains: the close is published with it.
	grace atomic.Int64
	sock  *socket.Conn

	// users and cids are the watches; dropped is set once the connection
	// is gone, so a watch request racing its close adds nothing. All three
	// are guarded by relay.mu.
	users   map[string]struct{}
	cids    map[string]struct{}
	dropped bool
}

// enqueue queues an event for the socket; a socket too slow to keep up is
// closed rather than allowed to hold up the relay.
func (c *conn) enqueue(b []byte) {
	if errors.Is(c.sock.Send(b), socket.ErrBehind) {
		c.sock.Close(socket.StatusTryAgainLater, "too slow to keep up")
	}
}

func (c *conn) close(code socket.StatusCode, reason string) { c.sock.Close(code, reason) }

// Message answers the client's health checks, the only thing it sends.
func (c *conn) Message(b []byte) {
	if isHealthCheck(b) {
		hc := event.Event{Type: event.HealthCheck, ConnectionID: c.id, CreatedAt: time.Now().UTC()}
		c.enqueue(hc.Encode())
	}
}

// Closed unregisters the connection and publishes its close.
func (c *conn) Closed() {
	defer c.g.connWG.Done()
	c.g.metrics.disconnected(c.sock.Ending())
	c.g.forget(c)
}

func (g *Gateway) serveConnect(w http.ResponseWriter, r *http.Request) {
	g.connWG.Add(1) // before anything can be registered for Close to wait on
	sock, err := g.sockets.Upgrade(w, r)
	if err != nil {
		g.connWG.Done()
		return // Upgrade has answered the request
	}
	c, profile, p, apiErr := g.admit(r, sock)
	if apiErr != nil {
		g.metrics.connectsRefused.Inc()
		g.reject(sock, apiErr)
		g.connWG.Done()
		return
	}
	g.metrics.connectsOK.Inc()
	// connection.ok strictly first: the SDK takes the first frame as the
	// answer. Then a health check, which starts the SDK's own.
	ok := event.Event{Type: event.ConnectionOK, ConnectionID: c.id, Me: selfView(profile, p), CreatedAt: time.Now().UTC()}
	hc := event.Event{Type: event.HealthCheck, ConnectionID: c.id, CreatedAt: time.Now().UTC()}
	_ = sock.Send(ok.Encode())
	_ = sock.Send(hc.Encode())
	// From here the socket's reader, writer and clocks do the rest; Closed
	// follows its end.
	sock.Start(c)
}

// admit checks the connect request, applies the connect-time user details and
// publishes the opening; it returns the registered connection.
func (g *Gateway) admit(r *http.Request, sock *socket.Conn) (*conn, model.User, model.Presence, *apierror.Error) {
	// Every attempt counts against its address, a refused one too: a flood
	// of bad connects is a flood.
	if g.perAddr != nil {
		if a, ok := clientAddr(r, g.trusted); ok && !g.perAddr.allow(a) {
			return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests, "too many connects from this address, retry shortly")
		}
	}
	req, apiErr := parseConnect(r.URL.Query(), g.cfg.APIKey, g.tokens)
	if apiErr != nil {
		return nil, model.User{}, model.Presence{}, apiErr
	}
	g.mu.Lock()
	draining := g.draining
	g.mu.Unlock()
	if draining {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeInternal, http.StatusServiceUnavailable, "gateway is draining, reconnect")
	}
	// Past the rate or the connects under way, a connect waits up to
	// ConnectWait in all: in a storm, a short wait here beats the SDK's
	// backoff of seconds.
	began := time.Now()
	wait, ok := g.connect.reserve(g.cfg.ConnectWait)
	if ok && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.Context().Done():
			ok = false
		}
		t.Stop()
	}
	if !ok {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests, "too many connects right now, retry shortly")
	}
	if !g.takeConnectSlot(r.Context(), g.cfg.ConnectWait-time.Since(began)) {
		// JetStream is behind: more connects would only queue on it (and
		// with them everyone's events).
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests, "too many connects under way, retry shortly")
	}
	defer func() { <-g.admitting }()
	if sock.Gone() {
		// The client left while it waited (its SDK has given up on this
		// connect): nothing to admit.
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests, "the client left before its turn")
	}

	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	profile, rev, changed, err := g.applyDetails(ctx, req.UserID, req.UserDetails)
	var inErr *apierror.Error
	if errors.As(err, &inErr) {
		return nil, model.User{}, model.Presence{}, inErr
	}
	if err != nil {
		g.log.Error("connect: store user", "user", req.UserID, "err", err)
		return nil, model.User{}, model.Presence{}, apierror.Internal()
	}
	p, _, err := store.Get[model.Presence](ctx, g.st.Presence, store.Key(req.UserID))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		g.log.Error("connect: read presence", "user", req.UserID, "err", err)
		return nil, model.User{}, model.Presence{}, apierror.Internal()
	}
	if len(p.Conns) >= g.cfg.MaxConnsPerUser {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeTooManyConnections, http.StatusTooManyRequests,
			"user %s already has %d open connections", req.UserID, len(p.Conns))
	}

	seq, epoch := g.seq.Add(1), g.epoch.Load()
	c := &conn{
		g:     g,
		id:    connid.ID{Node: g.cfg.NodeName, Epoch: epoch, Seq: seq}.String(),
		seq:   seq,
		epoch: epoch,
		user:  req.UserID,
		sock:  sock,
	}
	now := time.Now().UTC()
	opened := connevent.Event{
		Kind: connevent.Opened, User: c.user, ConnID: c.id, Node: g.cfg.NodeName, Epoch: epoch,
		At: now, Invisible: profile.Invisible, ProfileRev: rev,
	}
	// Register before publishing, under the same lock Close takes its
	// snapshot with: a connect racing a drain is either refused here or
	// closed by the drain, never left open behind it.
	g.mu.Lock()
	if g.draining || epoch != g.epoch.Load() {
		// Draining, or the lease was lost while this connect was under way.
		g.mu.Unlock()
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeInternal, http.StatusServiceUnavailable, "gateway is draining, reconnect")
	}
	g.conns[c.id] = c
	g.mu.Unlock()
	if err := g.publish(ctx, opened); err != nil {
		g.mu.Lock()
		delete(g.conns, c.id)
		g.mu.Unlock()
		g.log.Error("connect: publish opened", "conn", c.id, "err", err)
		// JetStream may have stored it and lost only the ack: close it too,
		// or the user could read online with no socket behind it.
		closed := opened
		closed.Kind = connevent.Closed
		go g.publishClosed(closed)
		return nil, model.User{}, model.Presence{}, apierror.Internal()
	}
	if changed {
		g.announceProfile(ctx, profile.ID, rev)
	}
	// What the user sees of themselves right after connecting.
	if !profile.Invisible {
		p.LastActive = now
	}
	p.Conns = map[string]model.Conn{c.id: {Node: g.cfg.NodeName, Epoch: epoch, OpenedAt: now}}
	p.Invisible = profile.Invisible
	return c, profile, p, nil
}

// parseConnect reads and checks a connect request's query: the api key, the
// token and the json parameter (the user, and details no larger than a
// profile may be). It needs nothing but the query, so that the gateway's
// parsing of what clients send can be fuzzed on its own; and a connect it
// refuses takes no rate-limit slot.
func parseConnect(q url.Values, apiKey string, tokens *token.Checker) (connectRequest, *apierror.Error) {
	if q.Get("api_key") != apiKey {
		return connectRequest{}, apierror.New(apierror.CodeAccessKey, http.StatusUnauthorized, "api_key not valid")
	}
	raw := q.Get("json")
	if len(raw) > maxConnectJSON {
		return connectRequest{}, apierror.New(apierror.CodePayloadTooBig, http.StatusRequestEntityTooLarge, "json parameter is larger than %d bytes", maxConnectJSON)
	}
	var req connectRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		return connectRequest{}, apierror.Input("json parameter is not valid JSON: %v", err)
	}
	claims, err := tokens.CheckUser(q.Get("authorization"))
	if err != nil {
		return connectRequest{}, apierror.FromToken(err)
	}
	if claims.Server {
		return connectRequest{}, apierror.New(apierror.CodeAuthFailed, http.StatusUnauthorized, "a server-side token cannot open a user connection")
	}
	if req.UserID == "" {
		req.UserID = claims.UserID
	}
	if req.UserID != claims.UserID {
		return connectRequest{}, apierror.New(apierror.CodeAuthFailed, http.StatusUnauthorized, "user_id %q does not match the token's user", req.UserID)
	}
	if err := subject.CheckUserID(req.UserID); err != nil {
		return connectRequest{}, apierror.Input("%v", err)
	}
	if b, _ := json.Marshal(req.UserDetails); len(b) > model.MaxUserBytes {
		return connectRequest{}, apierror.Input("user_details are larger than %d bytes", model.MaxUserBytes)
	}
	return req, nil
}

// takeConnectSlot takes one of the ConnectInFlight slots, waiting up to
// maxWait for one to free; false when none did (or the client left).
func (g *Gateway) takeConnectSlot(ctx context.Context, maxWait time.Duration) bool {
	select {
	case g.admitting <- struct{}{}:
		return true
	default:
	}
	if maxWait <= 0 {
		return false
	}
	g.connectsWaiting.Add(1)
	defer g.connectsWaiting.Add(-1)
	t := time.NewTimer(maxWait)
	defer t.Stop()
	select {
	case g.admitting <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// applyDetails stores the connect-time user details (already bounded by
// parseConnect), creating the user on first connect, and returns the profile,
// its revision and whether it changed in a way watchers see.
func (g *Gateway) applyDetails(ctx context.Context, id string, details map[string]any) (model.User, uint64, bool, error) {
	var visibleChange bool
	u, rev, wrote, err := store.Update(ctx, g.st.Users, store.Key(id), func(u *model.User, exists bool) error {
		before := u.Clone()
		now := time.Now().UTC()
		if !exists {
			*u = model.User{ID: id, Role: "user", CreatedAt: now}
		}
		if err := setDetails(u, details); err != nil {
			return err
		}
		if exists && reflect.DeepEqual(before, *u) {
			return store.ErrUnchanged
		}
		if err := u.CheckSize(); err != nil {
			return apierror.Input("user_details: %v", err)
		}
		u.UpdatedAt = now
		b := before
		b.Invisible, b.UpdatedAt = u.Invisible, u.UpdatedAt
		visibleChange = exists && !reflect.DeepEqual(b, *u)
		return nil
	})
	return u, rev, wrote && visibleChange, err
}

// setDetails applies connect-time user details to a profile: any field but
// the role and the id, which are never the client's to choose.
func setDetails(u *model.User, details map[string]any) error {
	for k, v := range details {
		if k == "role" || k == "id" {
			continue
		}
		if err := u.Set(k, v); err != nil {
			return apierror.Input("user_details: %v", err)
		}
	}
	return nil
}

// announceProfile tells the workers a user's profile changed at connect;
// they emit user.updated in the user's event sequence.
func (g *Gateway) announceProfile(ctx context.Context, user string, rev uint64) {
	ev := connevent.Event{Kind: connevent.ProfileChanged, User: user, ProfileRev: rev, At: time.Now().UTC()}
	if _, err := g.js.Publish(ctx, subject.UserCommand(user), ev.Encode(), jetstream.WithMsgID(ev.MsgID())); err != nil {
		g.log.Warn("connect: announce profile change", "user", user, "err", err)
	}
}

// selfView is the user's own "me": the invisible flag shows; online reads as
// others see it.
func selfView(u model.User, p model.Presence) map[string]any {
	return model.View(u, p, model.Self)
}

// reject sends the SDK's error frame and closes with 1000 so the SDK does not
// retry a connect that cannot succeed.
func (g *Gateway) reject(sock *socket.Conn, e *apierror.Error) {
	e.Duration = "0.00ms"
	b, _ := json.Marshal(map[string]any{"error": e})
	_ = sock.Send(b)
	code := socket.StatusNormal
	if e.Code == apierror.CodeInternal || e.Code == apierror.CodeRateLimit {
		code = socket.StatusTryAgainLater // the SDK reconnects
	}
	sock.Close(code, "connect rejected")
}

// isHealthCheck reports whether a client frame is the SDK's ping: a JSON
// array of events whose first is a health.check.
func isHealthCheck(b []byte) bool {
	var evs []struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(b, &evs) != nil {
		var one struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &one) != nil {
			return false
		}
		return one.Type == event.HealthCheck
	}
	return len(evs) > 0 && evs[0].Type == event.HealthCheck
}

// forget unregisters a closed connection and publishes its closing.
func (g *Gateway) forget(c *conn) {
	g.mu.Lock()
	delete(g.conns, c.id)
	g.mu.Unlock()
	g.relay.drop(c)
	ev := connevent.Event{Kind: connevent.Closed, User: c.user, ConnID: c.id, Node: g.cfg.NodeName, Epoch: c.epoch, At: time.Now().UTC(), Grace: time.Duration(c.grace.Load())}
	// Retried with backoff for two minutes: a lost "closed" leaves the user
	// online until this node's lease lapses, which for a live node is never.
	g.publishClosed(ev)
}

// publishClosed publishes a connection's close, retrying with backoff for up
// to two minutes (NATS reconnecting, a JetStream leader election).
func (g *Gateway) publishClosed(ev connevent.Event) {
	backoff := 100 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.publish(ctx, ev)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			g.log.Error("gave up publishing a connection's close: its user reads online until this node restarts", "conn", ev.ConnID, "err", err)
			return
		}
		g.log.Warn("publish closed, retrying", "conn", ev.ConnID, "err", err)
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}
