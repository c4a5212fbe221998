package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/presencehq/presence/pkg/token"
)

// REST calls one api node the way the SDK and a backend do.
type REST struct {
	Base  string
	creds Creds
	hc    *http.Client
}

var restClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
}

// NewREST calls the api node at base (http://host:port).
func NewREST(base string, creds Creds) *REST { return &REST{Base: base, creds: creds, hc: restClient} }

// do sends one request; user "" signs it server-side.
func (r *REST) do(ctx context.Context, method, path string, q url.Values, user string, body, out any) error {
	var tok string
	var err error
	if user == "" {
		tok, err = token.ForServer(r.creds.Secret)
	} else {
		tok, err = token.ForUser(r.creds.Secret, user)
	}
	if err != nil {
		return err
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("api_key", r.creds.Key)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.Base+path+"?"+q.Encode(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// batch is how many users one call may name (queryUsers limit, upsert).
const batch = 100

// Online asks, server-side, which of ids are online (queryUsers with
// {"id": {"$in": ids}}, 100 at a time). Users that do not exist are absent.
func (r *REST) Online(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	for i := 0; i < len(ids); i += batch {
		part := ids[i:min(i+batch, len(ids))]
		payload, _ := json.Marshal(map[string]any{
			"filter_conditions": map[string]any{"id": map[string]any{"$in": part}},
			"limit":             len(part),
		})
		var res struct {
			Users []struct {
				ID     string `json:"id"`
				Online bool   `json:"online"`
			} `json:"users"`
		}
		if err := r.do(ctx, http.MethodGet, "/users", url.Values{"payload": {string(payload)}}, "", nil, &res); err != nil {
			return nil, err
		}
		for _, u := range res.Users {
			out[u.ID] = u.Online
		}
	}
	return out, nil
}

// UpsertUsers creates (or replaces) users with only their id.
func (r *REST) UpsertUsers(ctx context.Context, ids []string) error {
	for i := 0; i < len(ids); i += batch {
		users := map[string]any{}
		for _, id := range ids[i:min(i+batch, len(ids))] {
			users[id] = map[string]any{"id": id}
		}
		if err := r.do(ctx, http.MethodPost, "/users", nil, "", map[string]any{"users": users}, nil); err != nil {
			return err
		}
	}
	return nil
}

// CreateChannel creates channel typ:id server-side, created by creator,
// with members (added 100 per call, as the API allows).
func (r *REST) CreateChannel(ctx context.Context, typ, id, creator string, members []string) error {
	first := members[:min(batch, len(members))]
	body := map[string]any{"data": map[string]any{"created_by_id": creator, "members": first}}
	if err := r.do(ctx, http.MethodPost, "/channels/"+typ+"/"+id+"/query", nil, "", body, nil); err != nil {
		return err
	}
	for i := len(first); i < len(members); i += batch {
		add := members[i:min(i+batch, len(members))]
		if err := r.do(ctx, http.MethodPost, "/channels/"+typ+"/"+id, nil, "", map[string]any{"add_members": add}, nil); err != nil {
			return err
		}
	}
	return nil
}

// Watch has user's connection connID watch channel typ:id with presence,
// as channel.watch({presence: true}) does.
func (r *REST) Watch(ctx context.Context, user, connID, typ, id string) error {
	q := url.Values{"connection_id": {connID}, "user_id": {user}}
	body := map[string]any{"watch": true, "presence": true, "state": true}
	return r.do(ctx, http.MethodPost, "/channels/"+typ+"/"+id+"/query", q, user, body, nil)
}
