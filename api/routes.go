package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/presencehq/presence/pkg/ops"
)

// routes maps the whole HTTP surface (PROTOCOL.md §6).
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(s.log)
	e.Use(s.metrics.observe, stamp)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	// Browser apps call from their own origin with the SDK's headers.
	e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:  []string{"*"},
		AllowHeaders:  []string{"Authorization", "Content-Type", "stream-auth-type", "X-Stream-Client", "x-client-request-id"},
		AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		ExposeHeaders: rateHeaders,
	}))

	// Probes for load balancers and orchestrators (alive, ready to serve)
	// and metrics: no auth, no body worth hiding. The load balancer keeps
	// /metrics to the inside.
	e.GET("/healthz", echo.WrapHandler(http.HandlerFunc(ops.Healthz)))
	e.GET("/readyz", echo.WrapHandler(ops.Readyz(s.NotReady)))
	e.GET("/metrics", echo.WrapHandler(ops.Metrics(s.registry)))

	// Every endpoint below is for callers with the API key and a token, and
	// rate limited (ratelimit.go).
	a := e.Group("", s.authenticate, s.rateLimit)

	a.GET("/users", s.queryUsers)
	a.POST("/users", s.upsertUsers)
	a.PATCH("/users", s.partialUpdateUsers)

	a.POST("/channels", s.queryChannels)
	a.POST("/channels/:type/query", s.queryDistinctChannel)
	a.POST("/channels/:type/:id/query", s.queryChannel)
	a.POST("/channels/:type/:id/stop-watching", s.stopWatching)
	a.POST("/channels/:type/:id", s.updateChannel)
	a.PATCH("/channels/:type/:id", s.partialUpdateChannel)
	a.DELETE("/channels/:type/:id", s.deleteChannel)
	a.PATCH("/channels/:type/:id/member", s.updateMemberPartial)
	a.PATCH("/channels/:type/:id/member/:user_id", s.updateMemberPartial)
	a.GET("/members", s.queryMembers)

	a.GET("/channeltypes", s.listChannelTypes)
	a.POST("/channeltypes", s.createChannelType)
	a.GET("/channeltypes/:name", s.getChannelType)
	a.PUT("/channeltypes/:name", s.updateChannelType)
	a.DELETE("/channeltypes/:name", s.deleteChannelType)
	return e
}
