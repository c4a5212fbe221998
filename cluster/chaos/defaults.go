package chaos

import (
	"flag"
	"time"

	"github.com/presencehq/presence/gateway"
	worker "github.com/presencehq/presence/presence-worker"
)

// Defaults are the services' own settings (their flags' defaults): a
// scenario parameter left zero runs with these, and the bounds it checks
// come from them, so make chaos measures what production runs.
var gatewayDefaults, workerDefaults = func() (gateway.Config, worker.Config) {
	var g gateway.Config
	g.RegisterFlags(flag.NewFlagSet("gateway", flag.ContinueOnError))
	var w worker.Config
	w.RegisterFlags(flag.NewFlagSet("worker", flag.ContinueOnError))
	return g, w
}()

// setting puts d into env as name when it is set, and returns it or, when
// zero, the default def.
func setting(env map[string]string, name string, d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	env[name] = d.String()
	return d
}
