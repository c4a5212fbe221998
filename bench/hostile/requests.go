package hostile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/presencehq/presence/pkg/filter"
	"github.com/presencehq/presence/pkg/token"
)

// BadTokens connects as name again and again, as fast as the server
// answers, each time with another wrong token: none, garbage, forged,
// huge, unsigned, with a broken signature, expired, another user's, a
// server-side one. Every connect must be refused; LetIn counts those that
// were not.
func BadTokens(ctx context.Context, t Target, name string) Outcome {
	o := newOutcome(KindBadTokens, name)
	good, err := token.ForUser(t.Secret, name)
	if err != nil {
		o.fail(ctx, err)
		return o
	}
	forged, _ := token.ForUser("not-the-secret", name)
	expired, _ := token.Sign(t.Secret, map[string]any{"user_id": name, "exp": time.Now().Add(-time.Hour).Unix()})
	someoneElse, _ := token.ForUser(t.Secret, name+"-victim")
	server, _ := token.ForServer(t.Secret)
	toks := []string{
		"", "garbage", forged, strings.Repeat("a", 10000),
		"eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoieCJ9.", good[:len(good)-3] + "abc",
		expired, someoneElse, server,
	}
	for n := 0; ctx.Err() == nil; n++ {
		o.Sockets++
		o.Sent++
		ws, first, err := t.connect(ctx, name, toks[n%len(toks)])
		if err != nil {
			continue // refused at the handshake, or no answer but a close
		}
		if strings.Contains(string(first), `"connection.ok"`) {
			o.LetIn++
		}
		ws.CloseNow()
	}
	return o
}

// SlowQueries sends queryUsers built to be expensive, one after another, as
// the client name (with its user token: a hostile client has no server-side
// one, whose holder is trusted): $or nested as deep as filters may go around
// $autocomplete, an $in of as many ids as a list may hold, an $or of 200
// $autocomplete terms, each sorted by last_active. Every one must be
// answered, with any status (a rate limit is an answer).
func SlowQueries(ctx context.Context, t Target, name string) Outcome {
	o := newOutcome(KindSlowQueries, name)
	tok, err := token.ForUser(t.Secret, name)
	if err != nil {
		o.fail(ctx, err)
		return o
	}
	for n := 0; ctx.Err() == nil; n++ {
		o.Sent++
		if err := t.slowQuery(ctx, tok, n); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			o.Unanswered++
			o.fail(ctx, err)
		}
	}
	return o
}

// slowQuery sends the n-th kind of slow query and reads its answer's
// status.
func (t Target) slowQuery(ctx context.Context, tok string, n int) error {
	var f any
	switch n % 3 {
	case 0:
		f = map[string]any{"name": map[string]any{"$autocomplete": "a"}}
		for range filter.MaxDepth - 1 {
			f = map[string]any{"$or": []any{f, map[string]any{"id": map[string]any{"$gt": "a"}}}}
		}
	case 1:
		ids := make([]any, filter.MaxList)
		for i := range ids {
			ids[i] = fmt.Sprint("u", i)
		}
		f = map[string]any{"id": map[string]any{"$in": ids}}
	case 2:
		var terms []any
		for i := range 200 {
			terms = append(terms, map[string]any{"name": map[string]any{"$autocomplete": fmt.Sprint(i)}})
		}
		f = map[string]any{"$or": terms}
	}
	q, _ := json.Marshal(map[string]any{"filter_conditions": f, "sort": []any{map[string]any{"field": "last_active", "direction": -1}}})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.HTTPURL+"/users?api_key="+url.QueryEscape(t.Key)+"&payload="+url.QueryEscape(string(q)), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("stream-auth-type", "jwt")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("a slow query got no answer: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("a slow query's answer broke off: %w", err)
	}
	return nil
}
