package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/micro"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// The presence queries other services ask over NATS (docs/nats.md): every
// api node answers them as one NATS micro service, "presence", in a queue
// group, from its index of the current state. The answers show users as
// another user sees them: an invisible user reads offline.

// MaxQueryIDs bounds the users one presence query names.
const MaxQueryIDs = 1000

// queryTimeout bounds answering one query.
const queryTimeout = 5 * time.Second

// UsersQuery is the request of presence.query.users.
type UsersQuery struct {
	IDs []string `json:"ids"`
}

// ChannelQuery is the request of presence.query.channel.
type ChannelQuery struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// startQueries adds the presence service to the api node's connection.
func (s *Server) startQueries() (micro.Service, error) {
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        "presence",
		Version:     "1.0.0",
		Description: "Who is online: the presence of users, and the online members of a channel",
		Metadata:    map[string]string{"node": s.cfg.NodeName},
	})
	if err != nil {
		return nil, fmt.Errorf("api: presence service: %w", err)
	}
	g := svc.AddGroup(subject.QueryPrefix)
	if err := g.AddEndpoint("users", micro.HandlerFunc(s.queryUsersNATS),
		micro.WithEndpointMetadata(map[string]string{"request": `{"ids": ["alice", "bob"]}`, "limit": fmt.Sprint(MaxQueryIDs)})); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("api: presence service: %w", err)
	}
	if err := g.AddEndpoint("channel", micro.HandlerFunc(s.queryChannelNATS),
		micro.WithEndpointMetadata(map[string]string{"request": `{"type": "messaging", "id": "general"}`})); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("api: presence service: %w", err)
	}
	return svc, nil
}

// natsError answers req with a micro error: code is an HTTP status, as
// NATS services use them.
func natsError(req micro.Request, code int, format string, args ...any) {
	_ = req.Error(fmt.Sprint(code), fmt.Sprintf(format, args...), nil)
}

func (s *Server) queryUsersNATS(req micro.Request) {
	var q UsersQuery
	if err := json.Unmarshal(req.Data(), &q); err != nil {
		natsError(req, 400, "the request is not {\"ids\": [...]}: %v", err)
		return
	}
	if len(q.IDs) == 0 || len(q.IDs) > MaxQueryIDs {
		natsError(req, 400, "ids must name 1 to %d users, not %d", MaxQueryIDs, len(q.IDs))
		return
	}
	for _, id := range q.IDs {
		if err := subject.CheckUserID(id); err != nil {
			natsError(req, 400, "%v", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	users, err := s.usersAsOthersSee(ctx, q.IDs, func(model.User, model.Presence) bool { return true })
	if err != nil {
		s.log.Error("presence query failed", "query", "users", "err", err)
		natsError(req, 500, "internal error, please try again")
		return
	}
	_ = req.RespondJSON(map[string]any{"users": users})
}

func (s *Server) queryChannelNATS(req micro.Request) {
	var q ChannelQuery
	if err := json.Unmarshal(req.Data(), &q); err != nil {
		natsError(req, 400, "the request is not {\"type\": ..., \"id\": ...}: %v", err)
		return
	}
	if err := checkChannelPath(q.Type, q.ID); err != nil {
		natsError(req, 400, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	ch, _, err := store.Get[model.Channel](ctx, s.st.Channels, store.ChannelKey(q.Type, q.ID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		natsError(req, 404, "channel %s:%s does not exist", q.Type, q.ID)
		return
	case err != nil:
		s.log.Error("presence query failed", "query", "channel", "err", err)
		natsError(req, 500, "internal error, please try again")
		return
	}
	count, online, err := s.onlineMembers(ctx, ch.CID())
	if err != nil {
		s.log.Error("presence query failed", "query", "channel", "err", err)
		natsError(req, 500, "internal error, please try again")
		return
	}
	_ = req.RespondJSON(map[string]any{"cid": ch.CID(), "members": count, "online": online})
}

// onlineMembers is cid's member count and its online members as another
// user sees them, from the index, current with KV. Offline members are
// told by the users table's online entries, without reading them.
func (s *Server) onlineMembers(ctx context.Context, cid string) (int, []map[string]any, error) {
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence, store.BucketMembers); err != nil {
		return 0, nil, err
	}
	var count int
	online := []map[string]any{}
	err := s.idx.view(func(tx *bolt.Tx) error {
		mr, ur := newMemberReader(tx), newReader(tx, usersTable)
		onlineNow := ur.eqSource([]eqTerm{{"online", eqEnc(true)}})
		count = mr.count(cid)
		mr.users(cid, func(u string) bool {
			if onlineNow.has(u) {
				if v := viewOf(tx, u, model.Other); v["online"] == true {
					online = append(online, v)
				}
			}
			return true
		})
		return nil
	})
	return count, online, err
}

// usersAsOthersSee reads ids from the index, current with KV, and returns
// those keep accepts, in the order asked, as another user sees them.
func (s *Server) usersAsOthersSee(ctx context.Context, ids []string, keep func(model.User, model.Presence) bool) ([]map[string]any, error) {
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence); err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(ids))
	err := s.idx.view(func(tx *bolt.Tx) error {
		for _, id := range ids {
			u, ok := readUser(tx, id)
			if !ok {
				continue
			}
			p := readPresence(tx, id)
			if keep(u, p) {
				out = append(out, userView(u, p, model.Other))
			}
		}
		return nil
	})
	return out, err
}
