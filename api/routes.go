package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// routes maps the whole HTTP surface (PROTOCOL.md §6).
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(s.log)
	e.Use(stamp)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	// Browser apps call from their own origin with the SDK's headers.
	e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:  []string{"*"},
		AllowHeaders:  []string{"Authorization", "Content-Type", "stream-auth-type", "X-Stream-Client", "x-client-request-id"},
		AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		ExposeHeaders: rateHeaders,
	}))

	// Probes for load balancers and orchestrators: alive, and ready to serve
	// (connected to NATS). No auth, no body worth hiding.
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		if !s.nc.IsConnected() {
			return c.String(http.StatusServiceUnavailable, "not connected to NATS\n")
		}
		return c.String(http.StatusOK, "ok\n")
	})

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

	a.GET("/channeltypes", s.listChannelTypes)
	a.POST("/channeltypes", s.createChannelType)
	a.GET("/channeltypes/:name", s.getChannelType)
	a.PUT("/channeltypes/:name", s.updateChannelType)
	a.DELETE("/channeltypes/:name", s.deleteChannelType)
	return e
}
