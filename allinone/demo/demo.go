// Package demo is the live demo page of make run, at /demo/: pick a name,
// join a room, and watch its members go online and offline, with their
// status and when they were last active. The page is plain HTML, CSS and
// JavaScript (static/, embedded in the binary) around the official
// stream-chat SDK, which Presence does not ship: make demo-sdk bundles the
// version the end-to-end suite pins on the user's machine, and the handler
// serves that file from disk (sdk.go). Without it the page says how to make
// it.
//
// The page signs users in with the SDK's development tokens, so it works
// only when the server accepts them (-dev-tokens). Otherwise it says how to
// turn them on, and its one endpoint that acts refuses: nothing here mints
// or signs a token a client could use.
//
// Rooms are channels of type messaging named demo-<room>. Presence goes to
// a channel's members, not to its watchers (even a livestream's open
// audience does not see each other), so joining must make the user a member,
// and a user may not add themself to someone else's channel. The page's
// backend, POST /demo/join, does that as an app's backend would: a
// server-side call to the REST API, made in-process. It touches only demo-
// channels, so turning dev tokens on for the demo gives it no say over
// other channels.
package demo

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"time"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/subject"
	"github.com/presencehq/presence/pkg/token"
)

//go:embed static
var static embed.FS

// ChannelType is the type of the demo's channels, and ChannelPrefix starts
// each of their ids.
const (
	ChannelType   = "messaging"
	ChannelPrefix = "demo-"
)

// maxJoinBytes bounds a join request: two ids and their JSON.
const maxJoinBytes = 1 << 10

// Config is what the page and its backend need of the server.
type Config struct {
	// APIKey is given to the page (it is public: every client sends it).
	APIKey string
	// APISecret signs the server-side calls of POST /demo/join.
	APISecret string
	// DevTokens says whether the server accepts development tokens; the
	// page works only then.
	DevTokens bool
	// API is the REST API's handler, which /demo/join calls in-process.
	API http.Handler
	// SDKFile is the stream-chat bundle make demo-sdk builds, served at
	// /demo/stream-chat.js; the only file the handler reads from disk.
	SDKFile string
}

// Handler serves the page under /demo/.
func Handler(cfg Config) http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // cannot happen: static is embedded at build time
	}
	d := &demo{cfg: cfg}
	mux := http.NewServeMux()
	mux.Handle("/demo/", only(http.MethodGet, http.StripPrefix("/demo/", http.FileServerFS(files))))
	mux.Handle("/demo/config.json", only(http.MethodGet, http.HandlerFunc(d.config)))
	mux.Handle("/demo/stream-chat.js", only(http.MethodGet, http.HandlerFunc(d.sdk)))
	mux.Handle("/demo/join", only(http.MethodPost, http.HandlerFunc(d.join)))
	return headers(mux)
}

type demo struct{ cfg Config }

// headers keeps the page to its own scripts and styles, and the SDK's
// WebSocket, which may be on another port (:8800 for a base URL on :3030).
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// only answers other methods than method with an error in the SDK's shape
// (the mux's own answer would be plain text).
func only(method string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, time.Now(), apierror.New(apierror.CodeInput, http.StatusMethodNotAllowed, "method %s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// config is GET /demo/config.json: what the page needs to start, and
// sdk_error instead of sdk_version when the SDK's bundle cannot be served.
func (d *demo) config(w http.ResponseWriter, _ *http.Request) {
	body := map[string]any{"api_key": d.cfg.APIKey, "dev_tokens": d.cfg.DevTokens}
	if version, err := SDKVersion(d.cfg.SDKFile); err != nil {
		body["sdk_error"] = sdkProblem(err)
	} else {
		body["sdk_version"] = version
	}
	writeJSON(w, time.Now(), http.StatusOK, body)
}

// joinRequest is the body of POST /demo/join.
type joinRequest struct {
	UserID string `json:"user_id"`
	Room   string `json:"room"`
}

// join is POST /demo/join: make user_id (connected already, so the user
// exists) a member of the room's channel, creating it on first use. The
// caller is not authenticated: with development tokens on, anyone may act
// as any user anyway.
func (d *demo) join(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !d.cfg.DevTokens {
		writeError(w, start, apierror.NotAllowed("development tokens are off, so the demo page cannot sign anyone in: start Presence with -dev-tokens (make demo, or PRESENCE_DEV_TOKENS=true make run), on your own machine only"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJoinBytes))
	if err != nil {
		writeError(w, start, apierror.New(apierror.CodePayloadTooBig, http.StatusRequestEntityTooLarge, "a join request has at most %d bytes", maxJoinBytes))
		return
	}
	var req joinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, start, apierror.Input("a join request is JSON: {\"user_id\": ..., \"room\": ...}"))
		return
	}
	if err := subject.CheckUserID(req.UserID); err != nil {
		writeError(w, start, apierror.Input("%v", err))
		return
	}
	id := ChannelPrefix + req.Room
	if err := subject.CheckChannelID(id); err != nil {
		writeError(w, start, apierror.Input("room: %v", err))
		return
	}
	// Get or create the channel, then add the member: creating makes the
	// first user a member, adding makes any later one (and is a no-op for
	// a member).
	path := "/channels/" + ChannelType + "/" + id
	if e := d.call(r, path+"/query", map[string]any{"data": map[string]any{"created_by_id": req.UserID, "members": []string{req.UserID}}}); e != nil {
		writeError(w, start, e)
		return
	}
	if e := d.call(r, path, map[string]any{"add_members": []string{req.UserID}}); e != nil {
		writeError(w, start, e)
		return
	}
	writeJSON(w, start, http.StatusOK, map[string]any{"channel_type": ChannelType, "channel_id": id})
}

// call makes one server-side POST to the REST API and returns its error, in
// the SDK's shape as the API gave it.
func (d *demo) call(r *http.Request, path string, body any) *apierror.Error {
	b, err := json.Marshal(body)
	if err != nil {
		return apierror.Internal()
	}
	tok, err := token.ForServer(d.cfg.APISecret)
	if err != nil {
		return apierror.Internal()
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, path+"?api_key="+url.QueryEscape(d.cfg.APIKey), bytes.NewReader(b))
	if err != nil {
		return apierror.Internal()
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Stream-Auth-Type", "jwt")
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = r.RemoteAddr
	var resp response
	d.cfg.API.ServeHTTP(&resp, req)
	if resp.status == 0 || resp.status/100 == 2 {
		return nil
	}
	var e apierror.Error
	if json.Unmarshal(resp.body.Bytes(), &e) != nil || (e.Code == 0 && e.Message == "") {
		return apierror.Internal()
	}
	return &e
}

// response holds what the in-process API call answered.
type response struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *response) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}

func (r *response) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *response) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// writeJSON answers body with the duration every answer of the API carries.
func writeJSON(w http.ResponseWriter, start time.Time, status int, body map[string]any) {
	body["duration"] = duration(start)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func duration(start time.Time) string {
	return fmt.Sprintf("%.2fms", float64(time.Since(start).Microseconds())/1000)
}

// writeError answers e in the SDK's error shape, as the REST API does.
func writeError(w http.ResponseWriter, start time.Time, e *apierror.Error) {
	out := *e
	if out.StatusCode == 0 {
		out.StatusCode = http.StatusBadRequest
	}
	out.Duration = duration(start)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(out.StatusCode)
	_ = json.NewEncoder(w).Encode(out)
}
