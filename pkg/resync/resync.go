// Package resync is the message that asks the workers to publish the current
// event of some users again (subject.Resync).
//
// Presence events are core NATS messages: at most once. Those in flight when
// a NATS server dies, or sent while a gateway was reconnecting, are lost, and
// watchers would keep an old state for good. So a gateway that reconnects
// asks for the users and channels it watches, and a worker that reconnects
// asks for the users it emitted just before. Gateways drop the copies they
// already have (same version), so a resync is always safe.
package resync

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/subject"
)

// MaxItems bounds the users plus channels of one message.
const MaxItems = 1000

// Request names users, and channels whose members are resynced.
type Request struct {
	Users []string `json:"users,omitempty"`
	CIDs  []string `json:"cids,omitempty"`
}

// Send publishes users and cids in messages of at most MaxItems.
func Send(nc *nats.Conn, users, cids []string) error {
	var errs []error
	for len(users)+len(cids) > 0 {
		var r Request
		n := min(len(users), MaxItems)
		r.Users, users = users[:n], users[n:]
		m := min(len(cids), MaxItems-n)
		r.CIDs, cids = cids[:m], cids[m:]
		b, _ := json.Marshal(r)
		if err := nc.Publish(subject.Resync, b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Decode reads a request and checks every id (I7).
func Decode(b []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return Request{}, fmt.Errorf("resync: %w", err)
	}
	if len(r.Users)+len(r.CIDs) > MaxItems {
		return Request{}, fmt.Errorf("resync: %d items, at most %d", len(r.Users)+len(r.CIDs), MaxItems)
	}
	for _, u := range r.Users {
		if err := subject.CheckUserID(u); err != nil {
			return Request{}, fmt.Errorf("resync: %w", err)
		}
	}
	for _, cid := range r.CIDs {
		if _, _, err := subject.ParseCID(cid); err != nil {
			return Request{}, fmt.Errorf("resync: %w", err)
		}
	}
	return r, nil
}
