package api

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/filter"
)

func TestHTTPServerTakesTheLargestQueryAndRefusesBloatedHeads(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewHTTPServer("", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	ts.Start()
	t.Cleanup(ts.Close)

	// A filter at its bound, of the characters URL-escaping triples.
	payload := `{"filter_conditions":{"name":{"$eq":"` + strings.Repeat(`\"`, filter.MaxBytes/2-40) + `"}}}`
	resp, err := http.Get(ts.URL + "/users?" + url.Values{"payload": {payload}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("a query with a filter of %d bytes answered %d, want it served", len(payload), resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/users", nil)
	req.Header.Set("X-Bloat", strings.Repeat("x", 2*maxHeaderBytes))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a request head of %d KiB answered %d, want 431", 2*maxHeaderBytes>>10, resp.StatusCode)
	}
}

// A client trickling a request head (slowloris) is dropped once the head
// has taken the server's ReadHeaderTimeout. Ten seconds of real time: it
// runs beside the package's other tests.
func TestAStalledRequestHeadIsDropped(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Config = NewHTTPServer("", ts.Config.Handler)
	ts.Start()
	t.Cleanup(ts.Close)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /users?api_key=k HTTP/1.1\r\nHost: x\r\nAuthoriz")); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	limit := ts.Config.ReadHeaderTimeout
	_ = c.SetReadDeadline(began.Add(limit + 10*time.Second))
	if _, err := io.ReadAll(c); err != nil { // until the server closes
		t.Fatalf("the stalled head was not dropped within %v past the timeout: %v", 10*time.Second, err)
	}
	if took := time.Since(began); took < limit/2 {
		t.Fatalf("dropped after %v, before the head timeout (%v)", took, limit)
	}
}
