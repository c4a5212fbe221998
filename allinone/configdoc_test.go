package allinone

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/gateway"
	"github.com/presencehq/presence/pkg/config"
	"github.com/presencehq/presence/pkg/logs"
	worker "github.com/presencehq/presence/presence-worker"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/config.md from the flags")

// TestConfigDocMatchesFlags keeps docs/config.md, the one place every
// setting is documented, in step with the binaries' flags. Run
// `go test ./allinone -run ConfigDoc -update-docs` after changing a flag.
func TestConfigDocMatchesFlags(t *testing.T) {
	var b strings.Builder
	b.WriteString(`# Configuration

Every setting is a command-line flag and an environment variable: flag ` + "`-http-addr`" + ` is
` + "`PRESENCE_HTTP_ADDR`" + `. A flag given on the command line wins over the environment, which wins
over the default. This page is generated from the code (` + "`go test ./allinone -run ConfigDoc -update-docs`" + `)
and a test fails when it falls behind.
`)
	binaries := []struct {
		name, about string
		register    func(*flag.FlagSet)
	}{
		{"presence", "the all-in-one runner of `make run`: embedded NATS, gateway, worker and api in one process", func(fs *flag.FlagSet) { new(Config).RegisterFlags(fs) }},
		{"presence-gateway", "one gateway node (WebSocket `/connect`)", func(fs *flag.FlagSet) { new(gateway.Config).RegisterFlags(fs) }},
		{"presence-worker", "one presence worker", func(fs *flag.FlagSet) { new(worker.Config).RegisterFlags(fs) }},
		{"presence-api", "one api node (REST)", func(fs *flag.FlagSet) { new(api.Config).RegisterFlags(fs) }},
	}
	for _, bin := range binaries {
		fs := flag.NewFlagSet(bin.name, flag.ContinueOnError)
		bin.register(fs)
		new(logs.Options).RegisterFlags(fs)
		fmt.Fprintf(&b, "\n## %s\n\n%s.\n\n| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n", bin.name, bin.about)
		fs.VisitAll(func(f *flag.Flag) {
			def := "`" + f.DefValue + "`"
			if f.DefValue == "" {
				def = "(none)"
			}
			fmt.Fprintf(&b, "| `-%s` | `%s` | %s | %s |\n", f.Name, config.EnvName(f.Name), def, f.Usage)
		})
	}
	const path = "../docs/config.md"
	if *updateDocs {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != b.String() {
		t.Fatalf("docs/config.md is out of date with the flags; run `go test ./allinone -run ConfigDoc -update-docs`.\nwant:\n%s", b.String())
	}
}
