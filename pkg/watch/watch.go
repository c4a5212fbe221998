// Package watch is the request an api node sends to the gateway node that
// owns a connection, to add or remove that connection's watches
// (subject.GatewayWatch).
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/connid"
	"github.com/presencehq/presence/pkg/subject"
)

// ErrConnectionNotFound: the owning gateway has no such connection (closed,
// or the node is gone).
var ErrConnectionNotFound = errors.New("connection not found")

// Request asks a gateway to change one connection's watches.
type Request struct {
	ConnID string `json:"connection_id"`
	// UserID is the connection's user, checked by the gateway so one user
	// cannot register watches on another user's socket.
	UserID string `json:"user_id"`
	// Users and CIDs to watch (or to stop watching when Remove is set).
	Users  []string `json:"users,omitempty"`
	CIDs   []string `json:"cids,omitempty"`
	Remove bool     `json:"remove,omitempty"`
}

// Reply is the gateway's answer.
type Reply struct {
	Error string `json:"error,omitempty"`
	// NotFound is set when the connection does not exist on the node.
	NotFound bool `json:"not_found,omitempty"`
}

// Send sends req to the gateway owning req.ConnID and waits for its answer.
func Send(ctx context.Context, nc *nats.Conn, req Request) error {
	id, err := connid.Parse(req.ConnID)
	if err != nil {
		return apierror.Input("connection_id %q is not valid", req.ConnID)
	}
	b, _ := json.Marshal(req)
	msg, err := nc.RequestWithContext(ctx, subject.GatewayWatch(id.Node), b)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: gateway %s is not running", ErrConnectionNotFound, id.Node)
	}
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	var rep Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return fmt.Errorf("watch: bad reply: %w", err)
	}
	if rep.NotFound {
		return ErrConnectionNotFound
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}
