// Package natsconn dials NATS the way every Presence service does: named,
// reconnecting forever, logging connection trouble, and as its role
// (pkg/natsauth).
package natsconn

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/natsauth"
)

// Option tunes a connection.
type Option func(*[]nats.Option)

// As connects in role r: with r's inbox prefix, and as user with password
// when password is set (user defaults to the role's user). Without As a
// connection uses NATS's defaults and no credentials.
func As(r natsauth.Role, user, password string) Option {
	return func(o *[]nats.Option) {
		*o = append(*o, nats.CustomInboxPrefix(r.Inbox()))
		if password != "" {
			if user == "" {
				user = r.User()
			}
			*o = append(*o, nats.UserInfo(user, password))
		}
	}
}

// Connect dials url (a comma-separated list of servers) as name.
func Connect(url, name string, log *slog.Logger, opts ...Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	nopts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "server", nc.ConnectedUrl()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("NATS error", "subject", subj, "err", err)
		}),
	}
	for _, o := range opts {
		o(&nopts)
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// RegisterCredentialFlags binds a service's NATS user and password to the
// -nats-user and -nats-password flags (PRESENCE_NATS_USER,
// PRESENCE_NATS_PASSWORD), the same for every service.
func RegisterCredentialFlags(fs *flag.FlagSet, user, password *string, r natsauth.Role) {
	fs.StringVar(user, "nats-user", r.User(), "NATS user (pkg/natsauth role "+r.Name+"); used when a password is set")
	fs.StringVar(password, "nats-password", "", "NATS password; empty connects without credentials")
}
