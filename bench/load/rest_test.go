package load

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/presencehq/presence/pkg/token"
)

// TestRESTSignsAndShapesRequestsAsTheSDK: a watch is signed as the user,
// names the connection, and asks for presence; a server call is signed
// server-side; an error status comes back as an error.
func TestRESTSignsAndShapesRequestsAsTheSDK(t *testing.T) {
	checker := token.NewChecker("s")
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := checker.Check(r.Header.Get("Authorization"))
		if err != nil || r.URL.Query().Get("api_key") != "k" {
			http.Error(w, `{"code":5}`, http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		who := claims.UserID
		if claims.Server {
			who = "server"
		}
		seen = append(seen, r.Method+" "+r.URL.Path+" as "+who+" conn="+r.URL.Query().Get("connection_id")+" presence="+jsonString(body["presence"]))
		if strings.HasSuffix(r.URL.Path, "/broken/query") {
			http.Error(w, `{"code":4}`, http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	rest := REST{Base: srv.URL, Key: "k", Secret: "s"}
	if err := rest.UpsertUsers(ctx, []string{"ann"}); err != nil {
		t.Fatal(err)
	}
	if err := rest.Watch(ctx, "ann", "gw~1~2", "messaging", "general"); err != nil {
		t.Fatal(err)
	}
	if err := rest.Watch(ctx, "ann", "gw~1~3", "messaging", "broken"); err == nil {
		t.Fatal("a 400 answer was not an error")
	}
	want := []string{
		"POST /users as server conn= presence=null",
		"POST /channels/messaging/general/query as ann conn=gw~1~2 presence=true",
		"POST /channels/messaging/broken/query as ann conn=gw~1~3 presence=true",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
