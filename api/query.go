package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/watch"
)

// Paging limits, as in Stream.
const (
	DefaultUsersLimit    = 30
	MaxUsersLimit        = 100
	DefaultChannelsLimit = 10
	MaxChannelsLimit     = 30
	MaxOffset            = 1000
)

// schemas types the documents each query filters, by op.
var schemas = map[string]filter.Schema{"QueryUsers": filter.Users, "QueryChannels": filter.Channels, "QueryMembers": filter.Members}

// defaultUserSort is Stream's: oldest users first (ties by id, as always).
var defaultUserSort = filter.Sort{{Field: "created_at", Direction: 1}}

// query is what queryUsers and queryChannels share: a filter, a sort and a
// page.
type query struct {
	Filter json.RawMessage `json:"filter_conditions"`
	Sort   json.RawMessage `json:"sort"`
	Limit  *int            `json:"limit"`
	Offset *int            `json:"offset"`
}

// parsed is a checked query.
type parsed struct {
	filter filter.Filter
	conds  []conjunct // what of the filter the index can answer
	ranges []conjunct // and the ranges it sets, which bound a walk
	sort   filter.Sort
	limit  int
	offset int
}

// parse checks q; op names the call in error messages ("QueryUsers").
func (q query) parse(op string, defLimit, maxLimit int) (parsed, error) {
	var p parsed
	var err error
	if p.filter, err = filter.Parse(q.Filter, filter.WithSchema(schemas[op])); err != nil {
		return p, queryError(op, err)
	}
	p.conds, p.ranges = conjuncts(q.Filter)
	if p.sort, err = filter.ParseSort(q.Sort); err != nil {
		return p, queryError(op, err)
	}
	p.limit = defLimit
	if q.Limit != nil && *q.Limit != 0 {
		p.limit = *q.Limit
	}
	if p.limit < 1 || p.limit > maxLimit {
		return p, opError(op, "limit must be between 1 and %d", maxLimit)
	}
	if q.Offset != nil {
		p.offset = *q.Offset
	}
	if p.offset < 0 || p.offset > MaxOffset {
		return p, opError(op, "offset must be between 0 and %d; to go further, narrow filter_conditions (e.g. created_at after the last result) instead of paging", MaxOffset)
	}
	return p, nil
}

func queryError(op string, err error) error {
	msg := err.Error()
	if !errors.Is(err, filter.ErrInvalid) {
		msg = jsonError(err)
	}
	return opError(op, "%s", msg)
}

// hit is one matching document and the key it sorts last by.
type hit struct {
	key string
	doc filter.Map
}

// page sorts hits by the query's sort, then by key, and cuts the page.
func (p parsed) page(hits []hit) []hit {
	slices.SortStableFunc(hits, func(a, b hit) int {
		if c := p.sort.Compare(a.doc, b.doc); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	if p.offset >= len(hits) {
		return nil
	}
	hits = hits[p.offset:]
	if len(hits) > p.limit {
		hits = hits[:p.limit]
	}
	return hits
}

// usersQuery is the payload of GET /users.
type usersQuery struct {
	query
	Presence bool `json:"presence"`
}

// parseUsersQuery reads and checks the payload query parameter of GET
// /users; the sort defaults to defaultUserSort.
func parseUsersQuery(raw string) (usersQuery, parsed, error) {
	const op = "QueryUsers"
	if len(raw) > MaxBodyBytes {
		return usersQuery{}, parsed{}, apierror.New(apierror.CodePayloadTooBig, http.StatusRequestEntityTooLarge, "payload is larger than %d bytes", MaxBodyBytes)
	}
	var q usersQuery
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &q); err != nil {
			return usersQuery{}, parsed{}, opError(op, "invalid payload: %s", jsonError(err))
		}
	}
	p, err := q.parse(op, DefaultUsersLimit, MaxUsersLimit)
	if err != nil {
		return usersQuery{}, parsed{}, err
	}
	if len(p.sort) == 0 {
		p.sort = defaultUserSort
	}
	return q, p, nil
}

// queryUsers is GET /users?payload=...: filter, sort and page users, and with
// presence: true watch the returned users on the caller's connection.
func (s *Server) queryUsers(c echo.Context) error {
	cl := callerOf(c)
	ctx := c.Request().Context()
	q, p, err := parseUsersQuery(c.QueryParam("payload"))
	if err != nil {
		return err
	}
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence); err != nil {
		return err
	}
	var hits []hit
	err = s.idx.view(func(tx *bolt.Tx) error {
		hits = p.find(tx, usersTable, nil, func(id string, raw []byte) (filter.Map, bool) {
			var u model.User
			if json.Unmarshal(raw, &u) != nil {
				return nil, false
			}
			u.ID = id
			doc := filter.Map(userView(u, readPresence(tx, id), cl.viewerOf(id)))
			return doc, p.filter.Match(doc)
		})
		return nil
	})
	if err != nil {
		return err
	}
	users := make([]any, 0, len(hits))
	ids := make([]string, 0, len(hits))
	for _, h := range hits {
		users = append(users, map[string]any(h.doc))
		ids = append(ids, h.key)
	}
	if q.Presence && len(ids) > 0 {
		if err := s.watch(ctx, cl, watch.Request{Users: ids}); err != nil {
			return err
		}
		// Read presence again now that the watch is in place: a change in
		// between was published before the gateway subscribed, and the
		// client would keep the stale state until the next one (I2).
		if err := s.refreshPresence(ctx, cl, users, ids); err != nil {
			return err
		}
	}
	return reply(c, map[string]any{"users": users})
}

// refreshPresence replaces the presence fields of users (views of ids) with
// the current ones.
func (s *Server) refreshPresence(ctx context.Context, cl caller, users []any, ids []string) error {
	if err := s.idx.sync(ctx, store.BucketUsers, store.BucketPresence); err != nil {
		return err
	}
	return s.idx.view(func(tx *bolt.Tx) error {
		for i, id := range ids {
			u, ok := readUser(tx, id)
			if !ok {
				continue
			}
			fresh := userView(u, readPresence(tx, id), cl.viewerOf(id))
			doc := users[i].(map[string]any)
			doc["online"] = fresh["online"]
			if la, ok := fresh["last_active"]; ok {
				doc["last_active"] = la
			}
		}
		return nil
	})
}
