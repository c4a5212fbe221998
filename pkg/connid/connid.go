// Package connid makes and reads connection ids. A connection id names the
// gateway node that owns the socket and that node's epoch, so an api node
// knows where to send a watch and a worker knows which connections a
// restarted node has lost (I6).
//
// Form: "<node>~<epoch base36>~<sequence base36>".
package connid

import (
	"errors"
	"strconv"
	"strings"

	"github.com/presencehq/presence/pkg/subject"
)

// ErrInvalid is returned for a string that is not a connection id.
var ErrInvalid = errors.New("invalid connection id")

// MaxLen bounds a connection id.
const MaxLen = subject.MaxNodeLen + 32

// ID is a parsed connection id.
type ID struct {
	Node  string
	Epoch uint64
	Seq   uint64
}

// String formats the id.
func (id ID) String() string {
	return id.Node + "~" + strconv.FormatUint(id.Epoch, 36) + "~" + strconv.FormatUint(id.Seq, 36)
}

// Parse reads and validates a connection id.
func Parse(s string) (ID, error) {
	if len(s) > MaxLen {
		return ID{}, ErrInvalid
	}
	parts := strings.Split(s, "~")
	if len(parts) != 3 || subject.CheckNode(parts[0]) != nil {
		return ID{}, ErrInvalid
	}
	epoch, err1 := strconv.ParseUint(parts[1], 36, 64)
	seq, err2 := strconv.ParseUint(parts[2], 36, 64)
	if err1 != nil || err2 != nil {
		return ID{}, ErrInvalid
	}
	return ID{Node: parts[0], Epoch: epoch, Seq: seq}, nil
}
