package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/connid"
	"github.com/presencehq/presence/pkg/event"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// Bounds on what a client sends.
const (
	maxConnectJSON = 16 << 10 // the json query parameter
	maxFrame       = 4 << 10  // one client frame (health checks are tiny)
)

// connectRequest is the SDK's "json" query parameter.
type connectRequest struct {
	UserID      string         `json:"user_id"`
	UserDetails map[string]any `json:"user_details"`
}

// conn is one accepted socket.
type conn struct {
	id    string
	seq   uint64
	epoch uint64
	user  string
	// grace is set when the node drains: the close is published with it.
	grace   atomic.Int64
	pinging atomic.Bool
	ws      *websocket.Conn
	out     *outbox
	done    chan struct{}

	closeOnce sync.Once
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
	select {
	case <-c.done:
		return
	default:
	}
	if !c.out.push(b) {
		go c.close(websocket.StatusTryAgainLater, "too slow to keep up")
	}
}

func (c *conn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.ws.Close(code, reason)
	})
}

// abort drops a client presumed dead without the closing handshake, which
// it would never answer.
func (c *conn) abort() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.ws.CloseNow()
	})
}

func (g *Gateway) serveConnect(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Clients authenticate with a token in the URL, never with cookies, so
		// a cross-origin page gains nothing: browsers on any origin may connect.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has answered the request
	}
	ws.SetReadLimit(maxFrame)
	g.connWG.Add(1)
	defer g.connWG.Done()

	c, profile, p, apiErr := g.admit(r, ws)
	if apiErr != nil {
		g.reject(ws, apiErr)
		return
	}
	ctx := r.Context()
	ok := event.Event{Type: event.ConnectionOK, ConnectionID: c.id, Me: selfView(profile, p), CreatedAt: time.Now().UTC()}
	// connection.ok strictly first: the SDK takes the first frame as the answer.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = ws.Write(wctx, websocket.MessageText, ok.Encode())
	if err == nil {
		hc := event.Event{Type: event.HealthCheck, ConnectionID: c.id, CreatedAt: time.Now().UTC()}
		err = ws.Write(wctx, websocket.MessageText, hc.Encode())
	}
	cancel()
	if err == nil {
		done := make(chan struct{})
		go func() { defer close(done); g.writeLoop(c) }()
		g.readLoop(ctx, c)
		c.close(websocket.StatusNormalClosure, "")
		<-done
	}
	g.forget(c)
}

// admit checks the connect request, applies the connect-time user details and
// publishes the opening; it returns the registered connection.
func (g *Gateway) admit(r *http.Request, ws *websocket.Conn) (*conn, model.User, model.Presence, *apierror.Error) {
	q := r.URL.Query()
	if q.Get("api_key") != g.cfg.APIKey {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeAccessKey, http.StatusUnauthorized, "api_key not valid")
	}
	raw := q.Get("json")
	if len(raw) > maxConnectJSON {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodePayloadTooBig, http.StatusRequestEntityTooLarge, "json parameter is larger than %d bytes", maxConnectJSON)
	}
	var req connectRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		return nil, model.User{}, model.Presence{}, apierror.Input("json parameter is not valid JSON: %v", err)
	}
	claims, err := g.tokens.CheckUser(q.Get("authorization"))
	if err != nil {
		return nil, model.User{}, model.Presence{}, apierror.FromToken(err)
	}
	if claims.Server {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeAuthFailed, http.StatusUnauthorized, "a server-side token cannot open a user connection")
	}
	if req.UserID == "" {
		req.UserID = claims.UserID
	}
	if req.UserID != claims.UserID {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeAuthFailed, http.StatusUnauthorized, "user_id %q does not match the token's user", req.UserID)
	}
	if err := subject.CheckUserID(req.UserID); err != nil {
		return nil, model.User{}, model.Presence{}, apierror.Input("%v", err)
	}
	g.mu.Lock()
	draining := g.draining
	g.mu.Unlock()
	if draining {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeInternal, http.StatusServiceUnavailable, "gateway is draining, reconnect")
	}
	if !g.connect.allow() {
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests, "too many connects right now, retry shortly")
	}
	select {
	case g.admitting <- struct{}{}:
		defer func() { <-g.admitting }()
	default:
		// JetStream is behind: new connects would only queue on it (and
		// with them the lease renewals and everyone's events).
		return nil, model.User{}, model.Presence{}, apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests, "too many connects under way, retry shortly")
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
		id:    connid.ID{Node: g.cfg.NodeName, Epoch: epoch, Seq: seq}.String(),
		seq:   seq,
		epoch: epoch,
		user:  req.UserID,
		ws:    ws,
		out:   newOutbox(g.cfg.SendQueue),
		done:  make(chan struct{}),
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

// applyDetails stores the connect-time user details (creating the user on
// first connect) and returns the profile, its revision and whether it changed
// in a way watchers see.
func (g *Gateway) applyDetails(ctx context.Context, id string, details map[string]any) (model.User, uint64, bool, error) {
	if b, _ := json.Marshal(details); len(b) > model.MaxUserBytes {
		return model.User{}, 0, false, apierror.Input("user_details are larger than %d bytes", model.MaxUserBytes)
	}
	var visibleChange bool
	u, rev, wrote, err := store.Update(ctx, g.st.Users, store.Key(id), func(u *model.User, exists bool) error {
		before := u.Clone()
		now := time.Now().UTC()
		if !exists {
			*u = model.User{ID: id, Role: "user", CreatedAt: now}
		}
		for k, v := range details {
			if k == "role" || k == "id" {
				continue // never from the client
			}
			if err := u.Set(k, v); err != nil {
				return apierror.Input("user_details: %v", err)
			}
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
func (g *Gateway) reject(ws *websocket.Conn, e *apierror.Error) {
	e.Duration = "0.00ms"
	b, _ := json.Marshal(map[string]any{"error": e})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ws.Write(ctx, websocket.MessageText, b)
	code := websocket.StatusNormalClosure
	if e.Code == apierror.CodeInternal || e.Code == apierror.CodeRateLimit {
		code = websocket.StatusTryAgainLater // the SDK reconnects
	}
	_ = ws.Close(code, "connect rejected")
}

// readLoop reads client frames until the socket ends or stays silent past
// the health timeout, answering health checks.
func (g *Gateway) readLoop(ctx context.Context, c *conn) {
	for {
		rctx, cancel := context.WithTimeout(ctx, g.cfg.HealthTimeout)
		typ, b, err := c.ws.Read(rctx)
		cancel()
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		if isHealthCheck(b) {
			hc := event.Event{Type: event.HealthCheck, ConnectionID: c.id, CreatedAt: time.Now().UTC()}
			c.enqueue(hc.Encode())
		}
	}
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

// writeLoop writes queued events and pings the client, so a client that
// vanished without a close is found within PingInterval + PingTimeout.
func (g *Gateway) writeLoop(c *conn) {
	ping := time.NewTicker(g.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			// The pong may take a while; events keep flowing meanwhile.
			if c.pinging.CompareAndSwap(false, true) {
				go g.ping(c)
			}
		case <-c.out.ready:
			for _, b := range c.out.take() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.ws.Write(ctx, websocket.MessageText, b)
				cancel()
				if err != nil {
					c.close(websocket.StatusGoingAway, "write failed")
					return
				}
			}
		}
	}
}

// ping checks the client still answers; one that does not is dropped.
func (g *Gateway) ping(c *conn) {
	defer c.pinging.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PingTimeout)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		c.abort() // gone silent: no handshake to wait for
	}
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
