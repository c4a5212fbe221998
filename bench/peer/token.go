package peer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Errors a connect token check tells apart: an expired token is answered
// with centrifuge's "token expired" (the client refreshes it), any other
// failure with "invalid token" (the client stops).
var (
	ErrTokenInvalid = errors.New("connection token is invalid")
	ErrTokenExpired = errors.New("connection token is expired")
)

var b64 = base64.RawURLEncoding

// verify checks an HS256 connection JWT as centrifuge apps do (Centrifugo's
// connection token: the user in sub, an optional exp) and returns its user.
// Only HS256 is accepted, so "none" or an asymmetric algorithm never passes.
func verify(secret []byte, tok string, now time.Time) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", ErrTokenInvalid
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return "", ErrTokenInvalid
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "HS256" {
		return "", ErrTokenInvalid
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return "", ErrTokenInvalid
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return "", ErrTokenInvalid
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return "", ErrTokenInvalid
	}
	var cl struct {
		Sub string `json:"sub"`
		Exp *int64 `json:"exp"`
	}
	if json.Unmarshal(pb, &cl) != nil || cl.Sub == "" {
		return "", ErrTokenInvalid
	}
	if cl.Exp != nil && now.Unix() >= *cl.Exp {
		return "", ErrTokenExpired
	}
	return cl.Sub, nil
}
