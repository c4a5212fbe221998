package model

import "time"

// Lease is a gateway node's lease, kept in the nodes bucket under the node
// name. The gateway renews it well inside TTL; a worker that sees no renewal
// for TTL marks it Expired (compare-and-set, so one worker wins) and every
// connection of that epoch is removed (I4). A gateway that finds its lease
// expired closes its sockets and starts a new epoch.
type Lease struct {
	Epoch     uint64        `json:"epoch"`
	RenewedAt time.Time     `json:"renewed_at"`
	TTL       time.Duration `json:"ttl"`
	Expired   bool          `json:"expired,omitempty"`
}
