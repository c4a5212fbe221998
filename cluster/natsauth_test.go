package cluster

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/presencehq/presence/pkg/natsauth"
)

var updateAuth = flag.Bool("update-auth", false, "rewrite deploy/nats/auth.conf from pkg/natsauth")

// deploy/nats/auth.conf is pkg/natsauth's permissions, generated: the NATS
// nodes of docker-compose.yml and make cluster let in exactly the users the
// all-in-one's embedded server does.
func TestNATSAuthConfIsGenerated(t *testing.T) {
	path := filepath.Join("..", "deploy", "nats", "auth.conf")
	want := natsauth.Conf()
	if *updateAuth {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not what pkg/natsauth generates: run `go test ./cluster -run TestNATSAuthConf -update-auth`", path)
	}
}
