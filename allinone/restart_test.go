package allinone

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/token"
)

// rest calls the REST API server-side and decodes the answer.
func rest(t *testing.T, p *Presence, method, path string, body any) map[string]any {
	t.Helper()
	out, err := tryRest(p, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryRest is rest returning its failure.
func tryRest(p *Presence, method, path string, body any) (map[string]any, error) {
	return endpointOf(p).rest(method, path, body)
}

// rest calls e's REST API server-side and decodes the answer; an answer
// other than 200 or 201 is an error.
func (e endpoint) rest(method, path string, body any) (map[string]any, error) {
	tok, err := token.ForServer(e.secret)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(method, e.httpURL+path+sep+"api_key="+url.QueryEscape(e.key), rd)
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s %s: status %d, undecodable body: %v", method, path, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("%s %s: status %d: %v", method, path, resp.StatusCode, out)
	}
	return out, nil
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", APIKey: "k", NodeName: "gateway-1"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := p.Secret
	rest(t, p, http.MethodPost, "/users", map[string]any{"users": map[string]any{"kept": map[string]any{"id": "kept", "name": "Kept", "mood": "calm"}}})
	p.Close()

	p, err = Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Secret != secret {
		t.Fatal("the generated secret changed across a restart: every token would break")
	}
	q, _ := json.Marshal(map[string]any{"filter_conditions": map[string]any{"id": "kept"}})
	out := rest(t, p, http.MethodGet, "/users?payload="+url.QueryEscape(string(q)), nil)
	users, _ := out["users"].([]any)
	if len(users) != 1 {
		t.Fatalf("after restart queryUsers = %v, want the user", out)
	}
	u := users[0].(map[string]any)
	if u["name"] != "Kept" || u["mood"] != "calm" {
		t.Fatalf("after restart user = %v", u)
	}
}
