package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := "s3cret"
	sign := func(claims map[string]any) string {
		tok, err := Sign(secret, claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	past, future := now.Add(-time.Hour).Unix(), now.Add(time.Hour).Unix()
	dev := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64.EncodeToString([]byte(`{"user_id":"ann"}`)) + ".devtoken"
	// client.devToken("ann") of stream-chat 9.53.0, byte for byte: its
	// payload is in padded standard base64.
	sdkDev := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYW5uIn0=.devtoken"
	parts := strings.Split(sign(map[string]any{"user_id": "ann"}), ".")
	paddedPayload := parts[0] + "." + parts[1] + "=." + parts[2]
	none := b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + b64.EncodeToString([]byte(`{"user_id":"ann"}`)) + "."
	other, _ := Sign("other", map[string]any{"user_id": "ann"})
	// The last of a signature's 43 characters holds 4 of its bits and 2
	// unused ones, which decoding ignores as it ignores line breaks.
	good := sign(map[string]any{"user_id": "ann"})
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	unusedBits := good[:len(good)-1] + string(alphabet[strings.IndexByte(alphabet, good[len(good)-1])^1])
	lineBreak := good[:len(good)-4] + "\n" + good[len(good)-4:]

	tests := []struct {
		name    string
		tok     string
		dev     bool
		wantErr error
		user    string
	}{
		{"valid user token passes", sign(map[string]any{"user_id": "ann"}), false, nil, "ann"},
		{"future exp passes", sign(map[string]any{"user_id": "ann", "exp": future}), false, nil, "ann"},
		{"past exp is expired", sign(map[string]any{"user_id": "ann", "exp": past}), false, ErrExpired, ""},
		{"future nbf is not valid yet", sign(map[string]any{"user_id": "ann", "nbf": future}), false, ErrNotValidYet, ""},
		{"future iat is rejected", sign(map[string]any{"user_id": "ann", "iat": future}), false, ErrIssuedInFuture, ""},
		{"other secret fails the signature", other, false, ErrSignature, ""},
		{"signature differing in its unused bits is invalid", unusedBits, false, ErrSignature, ""},
		{"signature with a line break is invalid", lineBreak, false, ErrSignature, ""},
		{"alg none is malformed", none, false, ErrMalformed, ""},
		{"two parts are malformed", "a.b", false, ErrMalformed, ""},
		{"overlong token is malformed", strings.Repeat("a", MaxLen+1), false, ErrMalformed, ""},
		{"dev token rejected when disabled", dev, false, ErrDevDisabled, ""},
		{"dev token accepted when enabled", dev, true, nil, "ann"},
		{"the SDK's own dev token accepted when enabled", sdkDev, true, nil, "ann"},
		{"the SDK's own dev token rejected when disabled", sdkDev, false, ErrDevDisabled, ""},
		{"signed token with a padded payload is malformed", paddedPayload, false, ErrMalformed, ""},
		{"token without user is rejected", sign(map[string]any{"foo": 1}), false, ErrNoUser, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker(secret, WithClock(func() time.Time { return now }), WithDevTokens(tt.dev))
			cl, err := c.CheckUser(tt.tok)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if cl.UserID != tt.user {
				t.Fatalf("user = %q, want %q", cl.UserID, tt.user)
			}
		})
	}
}

func TestPreviousSecretStillAccepted(t *testing.T) {
	old, _ := ForUser("old", "ann")
	c := NewChecker("new", WithPreviousSecret("old"))
	if _, err := c.CheckUser(old); err != nil {
		t.Fatalf("token of previous secret rejected: %v", err)
	}
}

func TestServerToken(t *testing.T) {
	tok, _ := ForServer("s")
	cl, err := NewChecker("s").Check(tok)
	if err != nil || !cl.Server {
		t.Fatalf("server token: claims %+v, err %v", cl, err)
	}
}
