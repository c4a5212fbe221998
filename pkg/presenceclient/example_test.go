package presenceclient_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/presenceclient"
)

// Another service asks who of its users is online, then follows one of
// them. (It needs a running Presence: `make run` prints the reader's URL.
// allinone's TestAnotherServiceGetsPresenceOverNATS runs the same against
// a real one.)
func Example() {
	nc, err := nats.Connect("nats://presence-reader:PASSWORD@127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	pc := presenceclient.New(nc, presenceclient.WithTimeout(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	users, err := pc.Get(ctx, []string{"alice", "bob"})
	if err != nil {
		log.Fatal(err)
	}
	for id, u := range users {
		fmt.Println(id, u.Online, u.LastActive)
	}
	events, err := pc.Watch(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	for ev := range events {
		fmt.Println(ev.User.ID, "online:", ev.User.Online)
	}
}
