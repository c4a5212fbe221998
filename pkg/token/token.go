// Package token signs and checks the HS256 JWTs the Stream SDK uses.
//
// Only HS256 is accepted: a token naming any other algorithm (including
// "none") is malformed. Several secrets may be active at once so operators
// can rotate without downtime. Development tokens (signature "devtoken") are
// accepted only when the Checker allows them.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors callers tell apart; each maps to one of the SDK's error codes.
var (
	ErrMalformed      = errors.New("token is malformed")                 // code 3
	ErrSignature      = errors.New("token signature is invalid")         // code 43
	ErrExpired        = errors.New("token is expired")                   // code 40
	ErrNotValidYet    = errors.New("token is not valid yet")             // code 41
	ErrIssuedInFuture = errors.New("token used before issued at")        // code 42
	ErrNotServer      = errors.New("token is not a server-side token")   // code 3
	ErrDevDisabled    = errors.New("development tokens are not enabled") // code 43
	ErrNoUser         = errors.New("token has no user_id")               // code 3
)

// MaxLen bounds a token; anything longer is malformed.
const MaxLen = 4096

// devSignature is the literal signature of client.devToken().
const devSignature = "devtoken"

// Claims are the claims Presence reads.
type Claims struct {
	UserID string `json:"user_id,omitempty"`
	Server bool   `json:"server,omitempty"`
	Exp    *int64 `json:"exp,omitempty"`
	Iat    *int64 `json:"iat,omitempty"`
	Nbf    *int64 `json:"nbf,omitempty"`
	// Dev is set for an accepted development token.
	Dev bool `json:"-"`
}

// Checker verifies tokens against one or more secrets.
type Checker struct {
	secrets   [][]byte
	allowDev  bool
	now       func() time.Time
	clockSkew time.Duration
}

// Option tunes a Checker.
type Option func(*Checker)

// WithDevTokens accepts unsigned development tokens.
func WithDevTokens(on bool) Option { return func(c *Checker) { c.allowDev = on } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(c *Checker) { c.now = now } }

// WithPreviousSecret also accepts tokens signed with an older secret.
func WithPreviousSecret(s string) Option {
	return func(c *Checker) {
		if s != "" {
			c.secrets = append(c.secrets, []byte(s))
		}
	}
}

// NewChecker returns a Checker for secret.
func NewChecker(secret string, opts ...Option) *Checker {
	c := &Checker{secrets: [][]byte{[]byte(secret)}, now: time.Now, clockSkew: 5 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c
}

var b64 = base64.RawURLEncoding

// Check verifies a token and returns its claims.
func (c *Checker) Check(tok string) (Claims, error) {
	var cl Claims
	if len(tok) == 0 || len(tok) > MaxLen {
		return cl, ErrMalformed
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return cl, ErrMalformed
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return cl, ErrMalformed
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "HS256" {
		return cl, ErrMalformed
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil && parts[2] == devSignature {
		// The SDK's client.devToken encodes its payload in standard,
		// padded base64 (stream-chat's encodeBase64), not in base64url.
		pb, err = base64.StdEncoding.DecodeString(parts[1])
	}
	if err != nil {
		return cl, ErrMalformed
	}
	if err := json.Unmarshal(pb, &cl); err != nil {
		return Claims{}, ErrMalformed
	}
	if parts[2] == devSignature {
		if !c.allowDev {
			return Claims{}, ErrDevDisabled
		}
		if cl.Server {
			return Claims{}, ErrSignature // a dev token never acts server-side
		}
		cl.Dev = true
	} else {
		if _, err := b64.DecodeString(parts[2]); err != nil {
			return Claims{}, ErrMalformed
		}
		if !c.signedByAny(parts[0]+"."+parts[1], parts[2]) {
			return Claims{}, ErrSignature
		}
	}
	now := c.now()
	if cl.Exp != nil && now.Unix() >= *cl.Exp {
		return Claims{}, ErrExpired
	}
	if cl.Nbf != nil && now.Add(c.clockSkew).Unix() < *cl.Nbf {
		return Claims{}, ErrNotValidYet
	}
	if cl.Iat != nil && now.Add(c.clockSkew).Unix() < *cl.Iat {
		return Claims{}, ErrIssuedInFuture
	}
	return cl, nil
}

// CheckUser verifies a user token and returns its user id.
func (c *Checker) CheckUser(tok string) (Claims, error) {
	cl, err := c.Check(tok)
	if err != nil {
		return cl, err
	}
	if cl.UserID == "" && !cl.Server {
		return Claims{}, ErrNoUser
	}
	return cl, nil
}

// signedByAny compares signatures in their encoded form, not decoded:
// decoding ignores the unused low bits of the last character (and line
// breaks), so several strings decode to the same signature, and a token
// could be changed without its signature failing.
func (c *Checker) signedByAny(input, sig string) bool {
	for _, s := range c.secrets {
		if hmac.Equal([]byte(b64.EncodeToString(sign(s, input))), []byte(sig)) {
			return true
		}
	}
	return false
}

func sign(secret []byte, input string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return m.Sum(nil)
}

// Sign returns an HS256 JWT of claims (any JSON-encodable value).
func Sign(secret string, claims any) (string, error) {
	pb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	input := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64.EncodeToString(pb)
	return input + "." + b64.EncodeToString(sign([]byte(secret), input)), nil
}

// ForUser signs a user token as the SDK's createToken does.
func ForUser(secret, userID string) (string, error) {
	return Sign(secret, map[string]any{"user_id": userID})
}

// ForServer signs a server-side token as the SDK's server client does.
func ForServer(secret string) (string, error) {
	return Sign(secret, map[string]any{"server": true})
}
