// Command presence-probe is the health check of every Presence container in
// docker-compose.yml (the image has no shell or curl). It exits 0 when the
// check passes, 1 otherwise:
//
//	presence-probe http URL [STATUS]
//	presence-probe nats-conn NAME MONITOR_URL...
//
// See package probe.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/presencehq/presence/cluster/probe"
)

func main() {
	if err := probe.Check(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
