package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

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
