package subject

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckUserID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"plain id is accepted", "john", true},
		{"email-like id is accepted", "jo_hn-1@x", true},
		{"empty id is rejected", "", false},
		{"dot would split a subject", "a.b", false},
		{"wildcard star is rejected", "a*", false},
		{"wildcard gt is rejected", ">", false},
		{"space is rejected", "a b", false},
		{"non-ascii is rejected", "jöhn", false},
		{"overlong id is rejected", strings.Repeat("a", MaxUserIDLen+1), false},
		{"longest id is accepted", strings.Repeat("a", MaxUserIDLen), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckUserID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckUserID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v is not ErrInvalidID", err)
			}
		})
	}
}

func TestChannelCharset(t *testing.T) {
	if err := CheckChannelID("!members-abc"); err != nil {
		t.Fatalf("distinct channel id rejected: %v", err)
	}
	if err := CheckChannelType("messaging:x"); err == nil {
		t.Fatal("channel type with ':' accepted")
	}
	if err := CheckNode("gateway-1"); err != nil {
		t.Fatalf("node name rejected: %v", err)
	}
}

func TestParseCID(t *testing.T) {
	if typ, id, err := ParseCID("messaging:general"); err != nil || typ != "messaging" || id != "general" {
		t.Fatalf("ParseCID(messaging:general) = %q %q %v", typ, id, err)
	}
	for _, bad := range []string{"", "messaging", ":x", "messaging:", "mess.aging:x", "messaging:a.b", "messaging:a>"} {
		if _, _, err := ParseCID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseCID(%q) = %v, want ErrInvalidID", bad, err)
		}
	}
}

func TestGatewayAliveRoundTrip(t *testing.T) {
	if node, ok := ParseGatewayAlive(GatewayAlive("gateway-1")); !ok || node != "gateway-1" {
		t.Fatalf("ParseGatewayAlive = %q %v", node, ok)
	}
	for _, bad := range []string{"presence.gateway.alive", "presence.gateway.a.b.alive", "presence.gateway.x.watch", "other.gateway.x.alive"} {
		if node, ok := ParseGatewayAlive(bad); ok {
			t.Errorf("ParseGatewayAlive(%q) = %q, want not ok", bad, node)
		}
	}
}
