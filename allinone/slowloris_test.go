package allinone

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/gateway"
)

// A client trickling a request head (slowloris) is dropped once the head
// has taken the server's ReadHeaderTimeout, by the gateway's and the api's
// HTTP servers alike, instead of holding a socket for as long as it likes.
// Ten seconds of real time, both at once.
func TestAStalledRequestHeadIsDropped(t *testing.T) {
	servers := map[string]func(http.Handler) *http.Server{
		"gateway": gateway.NewHTTPServer,
		"api":     func(h http.Handler) *http.Server { return api.NewHTTPServer("", h) },
	}
	for name, newServer := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewUnstartedServer(http.NotFoundHandler())
			ts.Config = newServer(ts.Config.Handler)
			ts.Start()
			t.Cleanup(ts.Close)
			c, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("GET /connect?api_key=k HTTP/1.1\r\nHost: x\r\nAuthoriz")); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			limit := ts.Config.ReadHeaderTimeout
			_ = c.SetReadDeadline(began.Add(limit + 10*time.Second))
			if _, err := io.ReadAll(c); err != nil { // until the server closes
				t.Fatalf("the stalled head was not dropped within 10s past the timeout (%v): %v", limit, err)
			}
			if took := time.Since(began); took < limit/2 {
				t.Fatalf("dropped after %v, before the head timeout (%v)", took, limit)
			}
		})
	}
}
