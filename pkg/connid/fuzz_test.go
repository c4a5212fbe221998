package connid

import (
	"errors"
	"strings"
	"testing"

	"github.com/presencehq/presence/pkg/subject"
)

// FuzzParse: a connection id arrives from clients (the connection_id query
// parameter) and names the gateway an api node sends a watch to. Parse never
// panics and fails only with ErrInvalid; an accepted id names a valid node
// and formats back, within MaxLen, to a string Parse reads as the same id.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		ID{Node: "gateway-1", Epoch: 1764000000123456789, Seq: 42}.String(),
		ID{Node: strings.Repeat("g", subject.MaxNodeLen), Epoch: ^uint64(0), Seq: ^uint64(0)}.String(),
		"gw~0~0",
		"gw~00A~z",
		"gw~3w5e11264sgsg~1",
		"gw~3w5e11264sgsh~1",
		"gw~-1~1",
		"gw~+1~1",
		"gw~~1",
		"gw.1~1~1",
		"gw*~1~1",
		"~1~1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %v is not ErrInvalid", s, err)
			}
			return
		}
		if err := subject.CheckNode(id.Node); err != nil {
			t.Fatalf("Parse(%q) accepted node %q: %v", s, id.Node, err)
		}
		back := id.String()
		if len(back) > MaxLen {
			t.Fatalf("Parse(%q) = %+v, which formats as %d bytes, past MaxLen %d", s, id, len(back), MaxLen)
		}
		if again, err := Parse(back); err != nil || again != id {
			t.Fatalf("Parse(%q) = %+v formats as %q, which parses as %+v, %v", s, id, back, again, err)
		}
	})
}
