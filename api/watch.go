package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/watch"
)

// watchTimeout bounds the wait for the gateway owning a connection.
const watchTimeout = 5 * time.Second

// watch asks the gateway owning the caller's connection to change its
// watches. Server-side callers and callers without a connection have no
// socket: there is nothing to register.
func (s *Server) watch(ctx context.Context, cl caller, req watch.Request) error {
	if cl.server || cl.connID == "" {
		return nil
	}
	req.ConnID, req.UserID = cl.connID, cl.user
	ctx, cancel := context.WithTimeout(ctx, watchTimeout)
	defer cancel()
	err := watch.Send(ctx, s.nc, req)
	var ae *apierror.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, watch.ErrConnectionNotFound):
		return apierror.New(apierror.CodeConnectionIDNotFound, http.StatusBadRequest, "connection_id %s not found", cl.connID)
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, nats.ErrTimeout):
		s.log.Error("watch request failed", "connection_id", cl.connID, "err", err)
		return apierror.Internal()
	}
	// The gateway refused (for instance the connection is another user's).
	return apierror.Input("watch failed: %v", err)
}
