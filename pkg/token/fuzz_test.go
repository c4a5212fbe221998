package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// The secrets and clock every fuzzed check runs with: the current secret and
// one being rotated out, so an accepted token may carry either's signature.
const (
	fuzzSecret = "s3cret"
	fuzzOld    = "old-secret"
)

var fuzzNow = time.Unix(1_800_000_000, 0)

// sentinels are the errors Check may return: callers map each to an SDK code
// with errors.Is, so anything else would reach the client as an internal error.
var sentinels = []error{
	ErrMalformed, ErrSignature, ErrExpired, ErrNotValidYet, ErrIssuedInFuture,
	ErrNotServer, ErrDevDisabled, ErrNoUser,
}

// FuzzCheck: no string makes Check panic; every error is one of the exported
// sentinels; a token Check accepts is an HS256 token whose third part is
// exactly the signature of one of the secrets, or (only where development
// tokens are allowed) a development token that does not claim server-side
// rights, and its time claims hold at the checker's clock. Beside the fuzzed
// string, a token signed for a user id taken from it is accepted, and the
// same token with one byte of its signature changed is not.
func FuzzCheck(f *testing.F) {
	b64s := func(s string) string { return b64.EncodeToString([]byte(s)) }
	signed := func(secret string, claims map[string]any) string {
		tok, err := Sign(secret, claims)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	hs256 := b64s(`{"alg":"HS256","typ":"JWT"}`)
	for _, tok := range []string{
		signed(fuzzSecret, map[string]any{"user_id": "ann"}),
		signed(fuzzOld, map[string]any{"user_id": "ann", "exp": fuzzNow.Unix() + 60}),
		signed(fuzzSecret, map[string]any{"server": true}),
		signed(fuzzSecret, map[string]any{"user_id": "ann", "exp": fuzzNow.Unix()}),
		signed(fuzzSecret, map[string]any{"user_id": "ann", "nbf": fuzzNow.Unix() + 5, "iat": fuzzNow.Unix() + 6}),
		signed("wrong", map[string]any{"user_id": "ann"}),
		hs256 + "." + b64s(`{"user_id":"ann"}`) + ".devtoken",
		hs256 + "." + b64s(`{"user_id":"ann","server":true}`) + ".devtoken",
		b64s(`{"alg":"none"}`) + "." + b64s(`{"user_id":"ann"}`) + ".",
		b64s(`{"alg":"RS256","typ":"JWT"}`) + "." + b64s(`{"user_id":"ann"}`) + "." + b64s(strings.Repeat("x", 256)),
		b64s(`{"alg":"HS256"}`) + "=." + b64s(`{"user_id":"ann"}`) + "==." + b64s("sig"),
		hs256 + "." + b64s(`{"user_id":"ann","exp":"soon"}`) + ".devtoken",
		hs256 + "." + b64s(`{"user_id":"ann","exp":1e400}`) + ".devtoken",
		hs256 + "." + b64s(strings.Repeat("[", 5000)) + ".devtoken",
		// client.devToken("ann"), its payload in padded standard base64.
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYW5uIn0=.devtoken",
		strings.Repeat("a", MaxLen) + "..",
		"..",
		"",
	} {
		f.Add(tok, uint(0), byte('A'))
	}
	dev := NewChecker(fuzzSecret, WithPreviousSecret(fuzzOld), WithClock(func() time.Time { return fuzzNow }), WithDevTokens(true))
	strict := NewChecker(fuzzSecret, WithPreviousSecret(fuzzOld), WithClock(func() time.Time { return fuzzNow }))
	f.Fuzz(func(t *testing.T, tok string, pos uint, b byte) {
		for _, c := range []*Checker{dev, strict} {
			cl, err := c.Check(tok)
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("Check(%q) = %v, not one of the exported errors", tok, err)
				}
				continue
			}
			checkAccepted(t, c, tok, cl)
		}

		// A token signed for this user is accepted, and carries the user.
		tok, err := ForUser(fuzzSecret, tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) > MaxLen {
			return
		}
		cl, err := strict.Check(tok)
		if err != nil {
			t.Fatalf("a freshly signed token %q is rejected: %v", tok, err)
		}
		var want struct {
			UserID string `json:"user_id"`
		}
		payload, _ := b64.DecodeString(strings.Split(tok, ".")[1])
		_ = json.Unmarshal(payload, &want)
		if cl.UserID != want.UserID || cl.Server || cl.Dev {
			t.Fatalf("signed token of user %q reads as %+v", want.UserID, cl)
		}

		// Any one byte of its signature changed, it is not.
		at := strings.LastIndexByte(tok, '.') + 1
		i := at + int(pos%uint(len(tok)-at))
		if tok[i] == b {
			return
		}
		mutated := tok[:i] + string([]byte{b}) + tok[i+1:]
		for _, c := range []*Checker{dev, strict} {
			if cl, err := c.Check(mutated); err == nil {
				t.Fatalf("signature byte %d of %q changed to %q, and the token is still accepted as %+v", i-at, tok, b, cl)
			} else if !isSentinel(err) {
				t.Fatalf("Check(%q) = %v, not one of the exported errors", mutated, err)
			}
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// checkAccepted checks on its own what c's acceptance of tok claims.
func checkAccepted(t *testing.T, c *Checker, tok string, cl Claims) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(tok) > MaxLen || len(parts) != 3 {
		t.Fatalf("accepted %q: %d bytes in %d parts", tok, len(tok), len(parts))
	}
	hb, err := b64.DecodeString(parts[0])
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err != nil || json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "HS256" {
		t.Fatalf("accepted %q whose header %q does not name HS256", tok, hb)
	}
	if parts[2] == devSignature {
		if !c.allowDev || !cl.Dev || cl.Server {
			t.Fatalf("accepted development token %q as %+v (development tokens allowed: %v)", tok, cl, c.allowDev)
		}
	} else {
		signedBy := func(secret string) bool {
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(parts[0] + "." + parts[1]))
			return parts[2] == b64.EncodeToString(m.Sum(nil))
		}
		if !signedBy(fuzzSecret) && !signedBy(fuzzOld) {
			t.Fatalf("accepted %q whose signature %q is no secret's", tok, parts[2])
		}
		if cl.Dev {
			t.Fatalf("accepted signed token %q as a development token", tok)
		}
	}
	now := fuzzNow.Unix()
	skew := int64(c.clockSkew / time.Second)
	if cl.Exp != nil && *cl.Exp <= now || cl.Nbf != nil && *cl.Nbf > now+skew || cl.Iat != nil && *cl.Iat > now+skew {
		payload, _ := b64.DecodeString(parts[1])
		t.Fatalf("accepted %q outside its time claims (now %d): %s", tok, now, payload)
	}
}
