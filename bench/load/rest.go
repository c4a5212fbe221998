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
	tok, err := token.ForServer(r.Secret)
	if user != "" {
		tok, err = token.ForUser(r.Secret, user)
	}
	if err != nil {
		return err
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("api_key", r.Key)
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, r.Base+path+"?"+q.Encode(), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
	}
	return nil
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
