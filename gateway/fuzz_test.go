package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/token"
)

// connectCodes are the SDK error codes a connect may be refused with before
// it reaches the store.
var connectCodes = []int{
	apierror.CodeAccessKey, apierror.CodeAuthFailed, apierror.CodeInput, apierror.CodePayloadTooBig,
	apierror.CodeTokenExpired, apierror.CodeTokenNotValidYet, apierror.CodeTokenBeforeIssuedAt, apierror.CodeTokenSignature,
}

// FuzzConnect feeds /connect's query parameters to parseConnect, then the
// details it accepts to setDetails, as admit does. Neither panics, and a
// refusal is always an SDK error with a known code and a client error
// status. An accepted connect has the right api key, a json parameter and
// details within their bounds, and a valid user id that is the token's
// (never a server-side token's); the profile it makes keeps that id and the
// role "user", and its "me" encodes. signed makes auth the user of a signed
// token rather than the token itself.
func FuzzConnect(f *testing.F) {
	const key, secret = "key", "secret"
	for _, seed := range []struct {
		apiKey, raw, auth string
		signed            bool
	}{
		{key, `{"user_id":"ann","user_details":{"id":"ann","name":"Ann","invisible":true}}`, "ann", true},
		{key, `{"user_details":{"role":"admin","id":"bob","teams":["red"],"color":"green"}}`, "ann", true},
		{key, `{"user_id":"bob"}`, "ann", true},
		{key, `{"user_id":"a.b"}`, "a.b", true},
		{key, `{"user_id":"ann","user_details":{"invisible":"yes"}}`, "ann", true},
		{key, `{"user_id":"ann","user_details":{"name":"` + strings.Repeat("n", model.MaxNameBytes+1) + `"}}`, "ann", true},
		{key, `{"user_id":"ann","user_details":{"bio":"` + strings.Repeat("b", model.MaxUserBytes) + `"}}`, "ann", true},
		{key, `{"user_id":"ann","user_details":"` + strings.Repeat("x", maxConnectJSON) + `"}`, "ann", true},
		{key, `{"user_id": "ann", `, "ann", true},
		{key, `null`, "ann", true},
		{key, ``, "ann", true},
		{key, `{"user_id":"ann"}`, "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiYW5uIn0.devtoken", false},
		{key, `{"user_id":"ann"}`, "eyJhbGciOiJIUzI1NiJ9.eyJzZXJ2ZXIiOnRydWV9.devtoken", false},
		{key, `{"user_id":"ann"}`, "garbage", false},
		{"nope", `{"user_id":"ann"}`, "ann", true},
	} {
		f.Add(seed.apiKey, seed.raw, seed.auth, seed.signed)
	}
	tokens := token.NewChecker(secret, token.WithDevTokens(true))
	f.Fuzz(func(t *testing.T, apiKey, raw, auth string, signed bool) {
		if signed {
			tok, err := token.ForUser(secret, auth)
			if err != nil {
				t.Fatal(err)
			}
			auth = tok
		}
		q := url.Values{"api_key": {apiKey}, "json": {raw}, "authorization": {auth}}
		req, apiErr := parseConnect(q, key, tokens)
		if apiErr != nil {
			sdkError(t, "parseConnect", apiErr)
			return
		}
		claims, err := tokens.CheckUser(auth)
		switch {
		case apiKey != key:
			t.Fatalf("accepted api key %q", apiKey)
		case len(raw) > maxConnectJSON:
			t.Fatalf("accepted a json parameter of %d bytes", len(raw))
		case err != nil || claims.Server:
			t.Fatalf("accepted token %q: claims %+v, %v", auth, claims, err)
		case req.UserID != claims.UserID:
			t.Fatalf("accepted user %q with a token of %q", req.UserID, claims.UserID)
		case subject.CheckUserID(req.UserID) != nil:
			t.Fatalf("accepted user id %q: %v", req.UserID, subject.CheckUserID(req.UserID))
		}
		if b, _ := json.Marshal(req.UserDetails); len(b) > model.MaxUserBytes {
			t.Fatalf("accepted user_details of %d bytes", len(b))
		}

		u := model.User{ID: req.UserID, Role: "user"}
		if err := setDetails(&u, req.UserDetails); err != nil {
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Code != apierror.CodeInput {
				t.Fatalf("setDetails(%v) = %v, want a code 4 error", req.UserDetails, err)
			}
			return
		}
		if u.ID != req.UserID || u.Role != "user" {
			t.Fatalf("details %v made the profile of %q into id %q, role %q", req.UserDetails, req.UserID, u.ID, u.Role)
		}
		if len(u.Name) > model.MaxNameBytes || len(u.Status) > model.MaxStatusBytes {
			t.Fatalf("details %v set a name of %d bytes, a status of %d", req.UserDetails, len(u.Name), len(u.Status))
		}
		if _, err := json.Marshal(selfView(u, model.Presence{})); err != nil {
			t.Fatalf("the connection.ok \"me\" of %+v does not encode: %v", u, err)
		}
	})
}

// sdkError fails unless e is an error the SDK reads: a connect refusal code
// and a 4xx status.
func sdkError(t *testing.T, what string, e *apierror.Error) {
	t.Helper()
	if !slices.Contains(connectCodes, e.Code) || e.StatusCode < http.StatusBadRequest || e.StatusCode >= http.StatusInternalServerError || e.Message == "" {
		t.Fatalf("%s refused with %+v, not a connect refusal the SDK knows", what, e)
	}
}
