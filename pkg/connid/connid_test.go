package connid

import "testing"

func TestRoundTrip(t *testing.T) {
	id := ID{Node: "gateway-1", Epoch: 1764000000123456789, Seq: 42}
	got, err := Parse(id.String())
	if err != nil || got != id {
		t.Fatalf("Parse(%q) = %+v, %v; want %+v", id.String(), got, err, id)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "a~b", "gw.1~1~1", "gw~zz!~1", "gw~1~1~1", "gw*~1~1"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
