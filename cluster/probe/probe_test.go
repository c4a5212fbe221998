package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestChecks(t *testing.T) {
	jsz := `{"meta_cluster":{"leader":"nats-2","cluster_size":3},"account_details":[{"name":"$G","stream_detail":[{"name":"PRESENCE_IN","cluster":{"leader":"nats-1"},"consumer_detail":[{"name":"presence-workers","cluster":{"leader":"nats-3"},"config":{"durable_name":"presence-workers"}},{"name":"eph","cluster":{},"config":{}}]}]}]}`
	leaderless := `{"meta_cluster":{"leader":"nats-2"},"account_details":[{"name":"$G","stream_detail":[{"name":"KV_x","cluster":{}}]}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("ok"))
		case "/users":
			http.Error(w, "no api key", http.StatusUnauthorized)
		case "/connz":
			w.Write([]byte(`{"connections":[{"name":"presence-worker worker-1"},{"name":"presence-api api-1"}]}`))
		case "/jsz":
			w.Write([]byte(jsz))
		case "/leaderless/jsz":
			w.Write([]byte(leaderless))
		case "/healthz", "/leaderless/healthz":
			w.Write([]byte(`{"status":"ok"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"connections":[],"meta_cluster":{}}`))
	}))
	defer empty.Close()

	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"http", srv.URL + "/ok"}, true},
		{[]string{"http", srv.URL + "/users", "401"}, true},
		{[]string{"http", srv.URL + "/users"}, false},
		{[]string{"http", srv.URL + "/nope"}, false},
		{[]string{"http", "http://127.0.0.1:1/"}, false},
		{[]string{"nats", srv.URL}, true},
		{[]string{"nats", empty.URL}, false},
		{[]string{"nats", srv.URL + "/leaderless"}, false},
		{[]string{"nats-conn", "presence-worker worker-1", empty.URL, srv.URL}, true},
		{[]string{"nats-conn", "presence-worker worker-2", srv.URL}, false},
		{[]string{"http"}, false},
		{[]string{"bogus", srv.URL}, false},
		{nil, false},
	} {
		err := Check(context.Background(), tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.args, err, tc.ok)
		}
	}
}
