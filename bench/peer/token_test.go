package peer

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func sign(secret, header, payload string) string {
	msg := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(msg))
	return msg + "." + b64.EncodeToString(mac.Sum(nil))
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	hs := `{"alg":"HS256","typ":"JWT"}`
	for _, tc := range []struct {
		name     string
		tok      string
		wantUser string
		wantErr  error
	}{
		{"a token signed with the secret names its user", sign("s", hs, `{"sub":"ann"}`), "ann", nil},
		{"a token not yet expired passes", sign("s", hs, `{"sub":"ann","exp":1800000001}`), "ann", nil},
		{"an expired token is told apart", sign("s", hs, `{"sub":"ann","exp":1800000000}`), "", ErrTokenExpired},
		{"another secret's signature is refused", sign("t", hs, `{"sub":"ann"}`), "", ErrTokenInvalid},
		{"alg none is refused", b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + b64.EncodeToString([]byte(`{"sub":"ann"}`)) + ".", "", ErrTokenInvalid},
		{"a token without sub is refused", sign("s", hs, `{"user_id":"ann"}`), "", ErrTokenInvalid},
		{"garbage is refused", "not.a.jwt", "", ErrTokenInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := verify([]byte("s"), tc.tok, now)
			if user != tc.wantUser || !errors.Is(err, tc.wantErr) {
				t.Fatalf("verify = %q, %v; want %q, %v", user, err, tc.wantUser, tc.wantErr)
			}
		})
	}
}
