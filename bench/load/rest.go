package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/presencehq/presence/pkg/token"
)

// REST calls the Presence REST API the way the SDK and an app's backend do.
type REST struct {
	// Base is http://host:port.
	Base   string
	Key    string
	Secret string
}

// do sends one request, signed as user ("" for a server-side token).
func (r REST) do(ctx context.Context, method, path string, q url.Values, user string, body any) error {
	_, err := r.call(ctx, method, path, q, user, body)
	return err
}

// call is do returning the answer's body.
func (r REST) call(ctx context.Context, method, path string, q url.Values, user string, body any) ([]byte, error) {
	tok, err := token.ForServer(r.Secret)
	if user != "" {
		tok, err = token.ForUser(r.Secret, user)
	}
	if err != nil {
		return nil, err
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("api_key", r.Key)
	b, _ := json.Marshal(body)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.Base+path+"?"+q.Encode(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
	}
	return out, nil
}

// UpsertUsers creates users with only their ids, 100 per call.
func (r REST) UpsertUsers(ctx context.Context, ids []string) error {
	for i := 0; i < len(ids); i += 100 {
		users := map[string]any{}
		for _, id := range ids[i:min(i+100, len(ids))] {
			users[id] = map[string]any{"id": id}
		}
		if err := r.do(ctx, http.MethodPost, "/users", nil, "", map[string]any{"users": users}); err != nil {
			return err
		}
	}
	return nil
}

// CreateChannel creates typ:id server-side with members, 100 per call.
func (r REST) CreateChannel(ctx context.Context, typ, id, creator string, members []string) error {
	first := members[:min(100, len(members))]
	if err := r.do(ctx, http.MethodPost, "/channels/"+typ+"/"+id+"/query", nil, "",
		map[string]any{"data": map[string]any{"created_by_id": creator, "members": first}}); err != nil {
		return err
	}
	for i := len(first); i < len(members); i += 100 {
		if err := r.do(ctx, http.MethodPost, "/channels/"+typ+"/"+id, nil, "", map[string]any{"add_members": members[i:min(i+100, len(members))]}); err != nil {
			return err
		}
	}
	return nil
}

// Watch has user's connection connID watch typ:id with presence, as
// channel.watch({presence: true}) does.
func (r REST) Watch(ctx context.Context, user, connID, typ, id string) error {
	return r.do(ctx, http.MethodPost, "/channels/"+typ+"/"+id+"/query", url.Values{"connection_id": {connID}, "user_id": {user}}, user,
		map[string]any{"watch": true, "presence": true, "state": true})
}

// WatchUsers has user's connection connID watch ids, as the SDK's
// client.queryUsers({id: {$in: ids}}, {}, {presence: true}) does (100 per
// call). The users must exist: queryUsers watches only those it finds.
func (r REST) WatchUsers(ctx context.Context, user, connID string, ids []string) error {
	for i := 0; i < len(ids); i += 100 {
		batch := ids[i:min(i+100, len(ids))]
		payload, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": batch}}, "limit": len(batch), "presence": true})
		q := url.Values{"payload": {string(payload)}, "connection_id": {connID}, "user_id": {user}}
		if err := r.do(ctx, http.MethodGet, "/users", q, user, nil); err != nil {
			return err
		}
	}
	return nil
}

// Online reports which of ids are online, as queryUsers answers (by id,
// 100 per call, signed server-side).
func (r REST) Online(ctx context.Context, ids []string) (map[string]bool, error) {
	online := make(map[string]bool, len(ids))
	for i := 0; i < len(ids); i += 100 {
		batch := ids[i:min(i+100, len(ids))]
		payload, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": map[string]any{"$in": batch}}, "limit": len(batch)})
		out, err := r.call(ctx, http.MethodGet, "/users", url.Values{"payload": {string(payload)}}, "", nil)
		if err != nil {
			return nil, err
		}
		var resp struct {
			Users []struct {
				ID     string `json:"id"`
				Online bool   `json:"online"`
			} `json:"users"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			return nil, fmt.Errorf("queryUsers: %w", err)
		}
		for _, u := range resp.Users {
			online[u.ID] = u.Online
		}
	}
	return online, nil
}
