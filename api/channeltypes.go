package api

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// channelType reads a channel type; a missing one is bad input, as in Stream.
func (s *Server) channelType(ctx context.Context, name string) (model.ChannelType, error) {
	ct, _, err := store.Get[model.ChannelType](ctx, s.st.ChannelTypes, store.Key(name))
	if errors.Is(err, store.ErrNotFound) {
		return ct, apierror.Input("channel type %s does not exist", name)
	}
	return ct, err
}

// replyChannelType answers the type's config at the top level.
func replyChannelType(c echo.Context, ct model.ChannelType) error {
	b, err := json.Marshal(ct)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	m["commands"] = []any{}
	return reply(c, m)
}

// listChannelTypes is GET /channeltypes.
func (s *Server) listChannelTypes(c echo.Context) error {
	ctx := c.Request().Context()
	lister, err := s.st.ChannelTypes.ListKeys(ctx)
	if err != nil {
		return err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop()
	slices.Sort(keys)
	keys = slices.Compact(keys)
	out := map[string]any{}
	for _, k := range keys {
		ct, _, err := store.Get[model.ChannelType](ctx, s.st.ChannelTypes, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		out[ct.Name] = ct
	}
	return reply(c, map[string]any{"channel_types": out})
}

// getChannelType is GET /channeltypes/{name}.
func (s *Server) getChannelType(c echo.Context) error {
	name := param(c, "name")
	if err := subject.CheckChannelType(name); err != nil {
		return apierror.Input("%v", err)
	}
	ct, _, err := store.Get[model.ChannelType](c.Request().Context(), s.st.ChannelTypes, store.Key(name))
	if errors.Is(err, store.ErrNotFound) {
		return apierror.NotFound("channel type %s does not exist", name)
	}
	if err != nil {
		return err
	}
	return replyChannelType(c, ct)
}

// applyChannelTypeFields sets the known fields present in body; other fields
// (Stream has many more settings) are accepted and ignored.
func applyChannelTypeFields(ct *model.ChannelType, body map[string]json.RawMessage) error {
	bools := map[string]*bool{
		"connect_events": &ct.ConnectEvents, "open_reads": &ct.OpenReads, "typing_events": &ct.TypingEvents, "read_events": &ct.ReadEvents,
		"replies": &ct.Replies, "reactions": &ct.Reactions, "search": &ct.Search, "mutes": &ct.Mutes,
	}
	for k, raw := range body {
		if p, ok := bools[k]; ok {
			if err := json.Unmarshal(raw, p); err != nil {
				return apierror.Input("field %s must be a boolean", k)
			}
		}
	}
	if raw, ok := body["max_message_length"]; ok {
		if err := json.Unmarshal(raw, &ct.MaxMessageLen); err != nil || ct.MaxMessageLen < 0 {
			return apierror.Input("field max_message_length must be a non-negative integer")
		}
	}
	return nil
}

// channelTypeName is the name of the type a POST /channeltypes body creates.
func channelTypeName(body map[string]json.RawMessage) (string, error) {
	var name string
	if err := json.Unmarshal(body["name"], &name); err != nil || name == "" {
		return "", apierror.Input("name is required")
	}
	if err := subject.CheckChannelType(name); err != nil {
		return "", apierror.Input("%v", err)
	}
	return name, nil
}

// createChannelType is POST /channeltypes (server-side only).
func (s *Server) createChannelType(c echo.Context) error {
	if err := serverOnly(callerOf(c), "creating a channel type"); err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decode(c, &body); err != nil {
		return err
	}
	name, err := channelTypeName(body)
	if err != nil {
		return err
	}
	now := s.now()
	ct := model.DefaultChannelTypes(now)[0]
	ct.Name = name
	if err := applyChannelTypeFields(&ct, body); err != nil {
		return err
	}
	b, _ := json.Marshal(ct)
	if _, err := s.st.ChannelTypes.Create(c.Request().Context(), store.Key(name), b); errors.Is(err, jetstream.ErrKeyExists) {
		return apierror.Input("channel type %s already exists", name)
	} else if err != nil {
		return err
	}
	return replyChannelType(c, ct)
}

// updateChannelType is PUT /channeltypes/{name} (server-side only), e.g.
// {"connect_events": false} to switch presence off for the type's channels.
func (s *Server) updateChannelType(c echo.Context) error {
	if err := serverOnly(callerOf(c), "updating a channel type"); err != nil {
		return err
	}
	name := param(c, "name")
	if err := subject.CheckChannelType(name); err != nil {
		return apierror.Input("%v", err)
	}
	var body map[string]json.RawMessage
	if err := decode(c, &body); err != nil {
		return err
	}
	probe := model.ChannelType{}
	if err := applyChannelTypeFields(&probe, body); err != nil {
		return err
	}
	ct, _, _, err := store.Update(c.Request().Context(), s.st.ChannelTypes, store.Key(name), func(ct *model.ChannelType, exists bool) error {
		if !exists {
			return apierror.NotFound("channel type %s does not exist", name)
		}
		if err := applyChannelTypeFields(ct, body); err != nil {
			return err
		}
		ct.UpdatedAt = s.now()
		return nil
	})
	if err != nil {
		return err
	}
	return replyChannelType(c, ct)
}

// deleteChannelType is DELETE /channeltypes/{name} (server-side only); a type
// that still has channels stays.
func (s *Server) deleteChannelType(c echo.Context) error {
	if err := serverOnly(callerOf(c), "deleting a channel type"); err != nil {
		return err
	}
	ctx := c.Request().Context()
	name := param(c, "name")
	if err := subject.CheckChannelType(name); err != nil {
		return apierror.Input("%v", err)
	}
	if _, _, err := store.Get[model.ChannelType](ctx, s.st.ChannelTypes, store.Key(name)); errors.Is(err, store.ErrNotFound) {
		return apierror.NotFound("channel type %s does not exist", name)
	} else if err != nil {
		return err
	}
	if err := s.idx.sync(ctx, store.BucketChannels); err != nil {
		return err
	}
	inUse := false
	err := s.idx.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte(store.BucketChannels)).Cursor().Seek([]byte(store.Key(name) + "."))
		inUse = k != nil && len(k) > len(name) && string(k[:len(name)+1]) == store.Key(name)+"."
		return nil
	})
	if err != nil {
		return err // the index is being rebuilt: retryable
	}
	if inUse {
		return apierror.Input("channel type %s still has channels; delete them first", name)
	}
	if err := s.st.ChannelTypes.Delete(ctx, store.Key(name)); err != nil {
		return err
	}
	return reply(c, nil)
}
