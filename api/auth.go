package api

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/subject"
)

// caller is who makes a request: a server-side client, or a user whose id
// comes only from the verified token (PROTOCOL.md §2).
type caller struct {
	server bool
	user   string
	// connID is the caller's WebSocket connection (client-side only), whose
	// watches a query with presence/watch adds to.
	connID string
}

// viewerOf says how the caller sees the user id.
func (cl caller) viewerOf(id string) model.Viewer {
	switch {
	case cl.server:
		return model.Server
	case cl.user == id:
		return model.Self
	}
	return model.Other
}

const callerKey = "presence.caller"

// authenticate checks api_key and the Authorization token and records the caller.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method == http.MethodOptions {
			return next(c)
		}
		key := c.QueryParam("api_key")
		if subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) != 1 {
			return apierror.New(apierror.CodeAccessKey, http.StatusUnauthorized, "api_key not valid")
		}
		tok := strings.TrimSpace(c.Request().Header.Get("Authorization"))
		if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
			tok = strings.TrimSpace(tok[7:])
		}
		if tok == "" {
			return apierror.New(apierror.CodeAuthFailed, http.StatusUnauthorized, "Authorization header is missing")
		}
		claims, err := s.tokens.CheckUser(tok)
		if err != nil {
			return apierror.FromToken(err)
		}
		cl := caller{server: claims.Server}
		if !cl.server {
			if err := subject.CheckUserID(claims.UserID); err != nil {
				return apierror.New(apierror.CodeAuthFailed, http.StatusUnauthorized, "token user_id: %v", err)
			}
			cl.user = claims.UserID
			// The user_id query param is the SDK's echo of the token's user;
			// the token alone decides who calls.
			cl.connID = c.QueryParam("connection_id")
		}
		c.Set(callerKey, cl)
		return next(c)
	}
}

func callerOf(c echo.Context) caller {
	cl, _ := c.Get(callerKey).(caller)
	return cl
}

// serverOnly rejects client-side callers.
func serverOnly(cl caller, what string) error {
	if !cl.server {
		return apierror.NotAllowed("%s is allowed only with server-side auth", what)
	}
	return nil
}
