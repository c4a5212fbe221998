package api

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// MaxUsersPerCall bounds upsertUsers and partialUpdateUsers, as in Stream.
const MaxUsersPerCall = 100

// userView is a user as viewer sees it. The profile's invisible flag also
// hides the user while the worker has not yet applied it to the presence
// state: an invisible user is never shown online (I1), not even for the
// moment between the two writes.
func userView(u model.User, p model.Presence, v model.Viewer) map[string]any {
	if u.Invisible {
		p.Invisible = true
	}
	return model.View(u, p, v)
}

// upsertUsers is POST /users: create or replace whole profiles.
func (s *Server) upsertUsers(c echo.Context) error {
	cl := callerOf(c)
	var body struct {
		Users map[string]json.RawMessage `json:"users"`
	}
	if err := decode(c, &body); err != nil {
		return err
	}
	ids, inputs, err := parseUpserts(body.Users, cl)
	if err != nil {
		return err
	}
	out := map[string]any{}
	for _, id := range ids {
		in := inputs[id]
		u, err := s.saveUser(c.Request().Context(), id, func(u *model.User, exists bool) error {
			role := u.Role
			if in.Role != "" && in.Role != role && !cl.server && (exists || in.Role != "user") {
				return apierror.NotAllowed("changing role is allowed only with server-side auth")
			}
			created := u.CreatedAt
			*u = in.Clone()
			u.CreatedAt = created
			if in.Role == "" {
				u.Role = role
			}
			return nil
		})
		if err != nil {
			return err
		}
		out[id] = u
	}
	return s.replyUsers(c, cl, out)
}

// parseUpserts reads and checks every user of an upsert before any is
// written (I7): the ids, in order, and the profiles they are to get.
func parseUpserts(users map[string]json.RawMessage, cl caller) ([]string, map[string]model.User, error) {
	if len(users) == 0 {
		return nil, nil, opError("UpdateUsers", "users is required")
	}
	if len(users) > MaxUsersPerCall {
		return nil, nil, opError("UpdateUsers", "at most %d users per call", MaxUsersPerCall)
	}
	ids := slices.Sorted(maps.Keys(users))
	inputs := make(map[string]model.User, len(ids))
	for _, id := range ids {
		if err := subject.CheckUserID(id); err != nil {
			return nil, nil, opError("UpdateUsers", "%v", err)
		}
		if !cl.server && id != cl.user {
			return nil, nil, apierror.NotAllowed("user %s may not update user %s", cl.user, id)
		}
		raw := users[id]
		if len(raw) > model.MaxUserBytes {
			return nil, nil, opError("UpdateUsers", "user %s is larger than %d bytes", id, model.MaxUserBytes)
		}
		var in model.User
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, nil, opError("UpdateUsers", "user %s: %s", id, jsonError(err))
		}
		if in.ID != "" && in.ID != id {
			return nil, nil, opError("UpdateUsers", "user id %s does not match its key %s", in.ID, id)
		}
		inputs[id] = in
	}
	return ids, inputs, nil
}

type partialUpdate struct {
	ID    string         `json:"id"`
	Set   map[string]any `json:"set"`
	Unset []string       `json:"unset"`
}

// partialUpdateUsers is PATCH /users: set and unset single fields.
func (s *Server) partialUpdateUsers(c echo.Context) error {
	cl := callerOf(c)
	var body struct {
		Users []partialUpdate `json:"users"`
	}
	if err := decode(c, &body); err != nil {
		return err
	}
	if err := checkPartialUpdates(body.Users, cl); err != nil {
		return err
	}
	out := map[string]any{}
	for _, pu := range body.Users {
		u, err := s.saveUser(c.Request().Context(), pu.ID, func(u *model.User, exists bool) error {
			if !exists {
				return apierror.NotFound("user %s does not exist", pu.ID)
			}
			for k, v := range pu.Set {
				if err := u.Set(k, v); err != nil {
					return opError("UpdateUsersPartial", "%v", err)
				}
			}
			for _, f := range pu.Unset {
				if f != "id" {
					u.Unset(f)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		out[pu.ID] = u
	}
	return s.replyUsers(c, cl, out)
}

// checkPartialUpdates checks every update of a PATCH /users before any is
// written, so bad input changes nothing (I7).
func checkPartialUpdates(users []partialUpdate, cl caller) error {
	if len(users) == 0 {
		return opError("UpdateUsersPartial", "users is required")
	}
	if len(users) > MaxUsersPerCall {
		return opError("UpdateUsersPartial", "at most %d users per call", MaxUsersPerCall)
	}
	for _, pu := range users {
		if err := subject.CheckUserID(pu.ID); err != nil {
			return opError("UpdateUsersPartial", "%v", err)
		}
		if !cl.server && pu.ID != cl.user {
			return apierror.NotAllowed("user %s may not update user %s", cl.user, pu.ID)
		}
		_, setRole := pu.Set["role"]
		if !cl.server && (setRole || slices.Contains(pu.Unset, "role")) {
			return apierror.NotAllowed("changing role is allowed only with server-side auth")
		}
		for _, f := range pu.Unset {
			if f == "" || len(f) > 256 {
				return opError("UpdateUsersPartial", "unset field names must have 1 to 256 characters")
			}
			if _, both := pu.Set[f]; both {
				return opError("UpdateUsersPartial", "field %s is both set and unset", f)
			}
		}
		// The type of a field decides, not the profile it is set on.
		var probe model.User
		for k, v := range pu.Set {
			if err := probe.Set(k, v); err != nil {
				return opError("UpdateUsersPartial", "%v", err)
			}
		}
	}
	return nil
}

// replyUsers answers {"users": {id: view}} with each user's current presence.
func (s *Server) replyUsers(c echo.Context, cl caller, users map[string]any) error {
	ids := slices.Sorted(maps.Keys(users))
	pres, err := s.presences(c.Request().Context(), ids)
	if err != nil {
		return err
	}
	views := make(map[string]any, len(users))
	for _, id := range ids {
		views[id] = userView(users[id].(model.User), pres[id], cl.viewerOf(id))
	}
	return reply(c, map[string]any{"users": views})
}

// saveUser changes id's profile with compare-and-set, then tells the rest of
// the system what changed: a visibility change goes to the worker (which
// decides the online/offline transition), any other change goes out as
// user.updated.
func (s *Server) saveUser(ctx context.Context, id string, change func(u *model.User, exists bool) error) (model.User, error) {
	now := s.now()
	var before model.User
	var existed bool
	u, rev, wrote, err := store.Update(ctx, s.st.Users, store.Key(id), func(u *model.User, exists bool) error {
		before, existed = u.Clone(), exists
		if err := change(u, exists); err != nil {
			return err
		}
		u.ID = id
		if u.Role == "" {
			u.Role = "user"
		}
		if !exists || u.CreatedAt.IsZero() {
			u.CreatedAt = now
		}
		u.UpdatedAt = now
		b, err := json.Marshal(u)
		if err != nil {
			return err
		}
		if len(b) > model.MaxUserBytes {
			return apierror.Input("user %s would be larger than %d bytes", id, model.MaxUserBytes)
		}
		return nil
	})
	if err != nil {
		var ae *apierror.Error
		if errors.As(err, &ae) {
			return u, ae
		}
		return u, err
	}
	if !wrote {
		return u, nil
	}
	if before.Invisible != u.Invisible || s.workerBehind(ctx, u) {
		ev := connevent.Event{Kind: connevent.Visibility, User: id, Invisible: u.Invisible, ProfileRev: rev, At: now}
		if _, err := s.js.Publish(ctx, subject.UserCommand(id), ev.Encode(), jetstream.WithMsgID(ev.MsgID())); err != nil {
			return u, err
		}
	}
	if existed && profileChanged(before, u) {
		if err := s.publishUserUpdated(ctx, u, rev); err != nil {
			return u, err
		}
	}
	return u, nil
}

// workerBehind reports whether the worker's copy of the invisible flag
// differs from the profile, e.g. because an earlier visibility publish failed
// after its profile write. Publishing again heals it: the worker ignores
// visibility changes older than what it has (I3).
func (s *Server) workerBehind(ctx context.Context, u model.User) bool {
	p, _, err := store.Get[model.Presence](ctx, s.st.Presence, store.Key(u.ID))
	if errors.Is(err, store.ErrNotFound) {
		return u.Invisible
	}
	return err == nil && p.Invisible != u.Invisible
}

// profileChanged reports a change others can see, apart from visibility.
func profileChanged(a, b model.User) bool {
	return a.Name != b.Name || a.Image != b.Image || a.Status != b.Status || a.Role != b.Role ||
		!slices.Equal(a.Teams, b.Teams) || !reflect.DeepEqual(normCustom(a.Custom), normCustom(b.Custom))
}

func normCustom(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

// publishUserUpdated tells the workers a profile changed; they emit
// user.updated in the user's event sequence, so it never overtakes (or is
// overtaken by) a presence change.
func (s *Server) publishUserUpdated(ctx context.Context, u model.User, rev uint64) error {
	ev := connevent.Event{Kind: connevent.ProfileChanged, User: u.ID, ProfileRev: rev, At: s.now()}
	_, err := s.js.Publish(ctx, subject.UserCommand(u.ID), ev.Encode(), jetstream.WithMsgID(ev.MsgID()))
	return err
}

// presences returns the current presence of ids (zero for users never seen).
func (s *Server) presences(ctx context.Context, ids []string) (map[string]model.Presence, error) {
	out := make(map[string]model.Presence, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if err := s.idx.sync(ctx, store.BucketPresence); err != nil {
		return nil, err
	}
	err := s.idx.view(func(tx *bolt.Tx) error {
		for _, id := range ids {
			out[id] = readPresence(tx, id)
		}
		return nil
	})
	return out, err
}

// readPresence reads id's presence from the index.
func readPresence(tx *bolt.Tx, id string) model.Presence {
	var p model.Presence
	if b := tx.Bucket([]byte(store.BucketPresence)).Get([]byte(store.Key(id))); b != nil {
		_ = json.Unmarshal(b, &p)
	}
	return p
}

// viewOf is user id as viewer sees it, read from the index; a user without
// a profile (a member whose user is gone) reads as an offline id.
func viewOf(tx *bolt.Tx, id string, viewer model.Viewer) map[string]any {
	u, ok := readUser(tx, id)
	if !ok {
		return map[string]any{"id": id, "online": false, "banned": false}
	}
	return userView(u, readPresence(tx, id), viewer)
}

// readUser reads id's profile from the index.
func readUser(tx *bolt.Tx, id string) (model.User, bool) {
	var u model.User
	b := tx.Bucket([]byte(store.BucketUsers)).Get([]byte(store.Key(id)))
	if b == nil || json.Unmarshal(b, &u) != nil {
		return u, false
	}
	if u.ID == "" {
		u.ID = id
	}
	return u, true
}
