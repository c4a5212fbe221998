package demo

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/token"
)

// TestBuiltBundleIsThePinnedSDK checks the bundle make demo-sdk built, when
// there is one (make test builds it): it is the version the end-to-end suite
// pins, its first line names it as SDKVersion reads it, and it fits
// MaxSDKBytes. make demo-sdk rebuilds it when the lock changes; this catches
// a bundle left from an older pin, and a build script whose output the page
// can no longer read.
func TestBuiltBundleIsThePinnedSDK(t *testing.T) {
	const bundle = "../../e2e/demo-sdk/stream-chat.js"
	got, err := SDKVersion(bundle)
	if errors.Is(err, ErrNoSDK) {
		t.Skipf("no bundle to check (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	readJSON(t, "../../e2e/package.json", &pkg)
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	readJSON(t, "../../e2e/package-lock.json", &lock)
	if want := pkg.Dependencies["stream-chat"]; got != want {
		t.Errorf("e2e/demo-sdk/stream-chat.js bundles stream-chat %q, e2e/package.json pins %q: run `make demo-sdk`", got, want)
	}
	if want := lock.Packages["node_modules/stream-chat"].Version; got != want {
		t.Errorf("e2e/demo-sdk/stream-chat.js bundles stream-chat %q, e2e/package-lock.json has %q: run `make demo-sdk`", got, want)
	}
}

// TestNoSDKIsEmbedded keeps the SDK out of the binary: its licence does not
// let Presence ship it, so the page's own files are all that is embedded.
func TestNoSDKIsEmbedded(t *testing.T) {
	err := fs.WalkDir(static, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := static.ReadFile(path)
		if err != nil {
			return err
		}
		if e.Name() == "stream-chat.js" || bytes.Contains(b, []byte("/* stream-chat ")) || len(b) > 32<<10 {
			t.Errorf("%s (%d bytes) looks like a bundle of the SDK, which must not be embedded", path, len(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fakeSDK writes a stand-in for the bundle, with the first line
// build-demo-sdk.mjs writes, and returns its path.
func fakeSDK(t *testing.T, version string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stream-chat.js")
	body := "/* stream-chat " + version + ", a stand-in for tests */\nexport class StreamChat {}\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// fakeAPI records the requests the demo makes of the REST API and answers
// each with status and body.
type fakeAPI struct {
	status int
	body   string
	got    []*http.Request
	bodies []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.got = append(f.got, r)
	f.bodies = append(f.bodies, string(b))
	w.WriteHeader(f.status)
	_, _ = io.WriteString(w, f.body)
}

func serve(t *testing.T, cfg Config, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	if cfg.APISecret == "" {
		cfg.APISecret = "secret"
	}
	if cfg.API == nil {
		cfg.API = &fakeAPI{status: http.StatusOK, body: "{}"}
	}
	w := httptest.NewRecorder()
	Handler(cfg).ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	return w
}

// sdkError reads an error answer, checking it has the SDK's shape.
func sdkError(t *testing.T, w *httptest.ResponseRecorder) apierror.Error {
	t.Helper()
	var e apierror.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Message == "" || e.StatusCode != w.Code || e.Duration == "" {
		t.Fatalf("answer %d %q is not an error in the SDK's shape (%v)", w.Code, w.Body.String(), err)
	}
	return e
}

func TestConfigTellsThePageWhatItNeeds(t *testing.T) {
	sdk := fakeSDK(t, "9.1.2")
	for _, dev := range []bool{true, false} {
		got := pageConfig(t, Config{APIKey: "key", DevTokens: dev, SDKFile: sdk})
		if got.APIKey != "key" || got.DevTokens != dev || got.SDKVersion != "9.1.2" || got.SDKError != "" {
			t.Errorf("config.json with dev tokens %t = %+v", dev, got)
		}
	}
}

type pageConfigJSON struct {
	APIKey     string `json:"api_key"`
	DevTokens  bool   `json:"dev_tokens"`
	SDKVersion string `json:"sdk_version"`
	SDKError   string `json:"sdk_error"`
}

func pageConfig(t *testing.T, cfg Config) pageConfigJSON {
	t.Helper()
	w := serve(t, cfg, http.MethodGet, "/demo/config.json", "")
	var got pageConfigJSON
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
		t.Fatalf("config.json: %d %s (%v)", w.Code, w.Body, err)
	}
	return got
}

func TestPageIsServedWithItsOwnScriptsOnly(t *testing.T) {
	sdk := fakeSDK(t, "9.1.2")
	for path, want := range map[string]string{
		"/demo/":               "text/html",
		"/demo/demo.js":        "text/javascript",
		"/demo/stream-chat.js": "text/javascript",
		"/demo/demo.css":       "text/css",
	} {
		w := serve(t, Config{SDKFile: sdk}, http.MethodGet, path, "")
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, w.Code, w.Header().Get("Content-Type"), want)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
}

func TestSDKIsServedFromItsFileAlone(t *testing.T) {
	sdk := fakeSDK(t, "9.1.2")
	want, err := os.ReadFile(sdk)
	if err != nil {
		t.Fatal(err)
	}
	w := serve(t, Config{SDKFile: sdk}, http.MethodGet, "/demo/stream-chat.js", "")
	if w.Code != http.StatusOK || w.Body.String() != string(want) {
		t.Errorf("GET /demo/stream-chat.js: %d %q, want 200 and the file %q", w.Code, w.Body, want)
	}
	// No other path reaches it, nor any other file on disk.
	for _, path := range []string{
		"/demo/" + filepath.Base(filepath.Dir(sdk)) + "/stream-chat.js",
		"/demo/x/../../stream-chat.js",
		"/demo/stream-chat.js/",
		"/demo/%2e%2e/stream-chat.js",
		"/demo/..%2fstream-chat.js",
		"/demo/stream-chat.js%00",
	} {
		w := serve(t, Config{SDKFile: sdk}, http.MethodGet, path, "")
		if strings.Contains(w.Body.String(), "a stand-in for tests") {
			t.Errorf("GET %s served the SDK's file: %d", path, w.Code)
		}
	}
}

func TestPageSaysHowToGetAMissingSDK(t *testing.T) {
	for name, file := range map[string]string{
		"no file set":         "",
		"no file at its path": filepath.Join(t.TempDir(), "stream-chat.js"),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{APIKey: "key", DevTokens: true, SDKFile: file}
			if got := pageConfig(t, cfg); got.SDKError != ErrNoSDK.Error() || got.SDKVersion != "" || !got.DevTokens {
				t.Errorf("config.json = %+v, want sdk_error %q", got, ErrNoSDK)
			}
			w := serve(t, cfg, http.MethodGet, "/demo/stream-chat.js", "")
			if e := sdkError(t, w); w.Code != http.StatusNotFound || e.Message != ErrNoSDK.Error() {
				t.Errorf("GET /demo/stream-chat.js: %d %+v, want 404 %q", w.Code, e, ErrNoSDK)
			}
			if w := serve(t, cfg, http.MethodGet, "/demo/", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "make demo-sdk") {
				t.Errorf("GET /demo/: %d, want the page, with how to make the SDK", w.Code)
			}
			if _, err := SDKVersion(file); !errors.Is(err, ErrNoSDK) || !strings.Contains(err.Error(), "-demo-sdk") {
				t.Errorf("SDKVersion = %v, want ErrNoSDK saying where it looked", err)
			}
		})
	}
}

func TestABundleThatIsNotOneIsNotServed(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct{ name, file, says string }{
		{"a file over MaxSDKBytes", write("big.js", append([]byte("/* stream-chat 9.1.2, big */\n"), make([]byte, MaxSDKBytes)...)), "more than"},
		{"a directory", dir, "not a regular file"},
		{"a file without the version line", write("other.js", []byte("export class StreamChat {}\n")), "does not start with"},
		{"a version line that is not a version", write("odd.js", []byte("/* stream-chat <b>9</b>, odd */\n")), "does not start with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SDKVersion(tt.file)
			if err == nil || errors.Is(err, ErrNoSDK) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("SDKVersion = %v, want an error saying %q", err, tt.says)
			}
			cfg := Config{DevTokens: true, SDKFile: tt.file}
			got := pageConfig(t, cfg)
			if got.SDKVersion != "" || !strings.Contains(got.SDKError, "make demo-sdk") || strings.Contains(got.SDKError, dir) {
				t.Errorf("config.json = %+v, want sdk_error saying to run make demo-sdk, without the path", got)
			}
			w := serve(t, cfg, http.MethodGet, "/demo/stream-chat.js", "")
			if e := sdkError(t, w); w.Code != http.StatusNotFound || strings.Contains(e.Message, dir) {
				t.Errorf("GET /demo/stream-chat.js: %d %+v, want 404 without the path", w.Code, e)
			}
		})
	}
}

func TestJoinRefusesWithoutDevTokens(t *testing.T) {
	api := &fakeAPI{status: http.StatusOK, body: "{}"}
	w := serve(t, Config{API: api}, http.MethodPost, "/demo/join", `{"user_id": "ann", "room": "lobby"}`)
	e := sdkError(t, w)
	if w.Code != http.StatusForbidden || e.Code != apierror.CodeNotAllowed || !strings.Contains(e.Message, "-dev-tokens") {
		t.Errorf("join without dev tokens: %d %+v, want 403 code 17 saying how to turn them on", w.Code, e)
	}
	if len(api.got) != 0 {
		t.Errorf("the API was called %d times", len(api.got))
	}
}

func TestJoinRejectsBadInputAndChangesNothing(t *testing.T) {
	tests := []struct {
		name, method, body string
		status, code       int
	}{
		{"a user id with a dot is refused", http.MethodPost, `{"user_id": "ann.b", "room": "lobby"}`, 400, apierror.CodeInput},
		{"an empty user id is refused", http.MethodPost, `{"room": "lobby"}`, 400, apierror.CodeInput},
		{"a room with a space is refused", http.MethodPost, `{"user_id": "ann", "room": "the lobby"}`, 400, apierror.CodeInput},
		{"a room too long for a channel id is refused", http.MethodPost, `{"user_id": "ann", "room": "` + strings.Repeat("r", 60) + `"}`, 400, apierror.CodeInput},
		{"a body that is not JSON is refused", http.MethodPost, `user_id=ann`, 400, apierror.CodeInput},
		{"a body over 1 KiB is refused", http.MethodPost, `{"user_id": "ann", "room": "lobby", "x": "` + strings.Repeat("x", 1<<10) + `"}`, 413, apierror.CodePayloadTooBig},
		{"GET is not a join", http.MethodGet, ``, 405, apierror.CodeInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{status: http.StatusOK, body: "{}"}
			w := serve(t, Config{DevTokens: true, API: api}, tt.method, "/demo/join", tt.body)
			if e := sdkError(t, w); w.Code != tt.status || e.Code != tt.code {
				t.Errorf("got %d code %d (%s), want %d code %d", w.Code, e.Code, e.Message, tt.status, tt.code)
			}
			if len(api.got) != 0 {
				t.Errorf("the API was called %d times", len(api.got))
			}
		})
	}
}

func TestJoinMakesTheUserAMemberServerSide(t *testing.T) {
	api := &fakeAPI{status: http.StatusCreated, body: "{}"}
	w := serve(t, Config{APIKey: "key", APISecret: "secret", DevTokens: true, API: api}, http.MethodPost, "/demo/join", `{"user_id": "ann", "room": "lobby"}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"channel_id":"demo-lobby"`) {
		t.Fatalf("join: %d %s", w.Code, w.Body)
	}
	want := []struct{ path, body string }{
		{"/channels/messaging/demo-lobby/query", `{"data":{"created_by_id":"ann","members":["ann"]}}`},
		{"/channels/messaging/demo-lobby", `{"add_members":["ann"]}`},
	}
	if len(api.got) != len(want) {
		t.Fatalf("the API got %d calls, want %d", len(api.got), len(want))
	}
	checker := token.NewChecker("secret")
	for i, r := range api.got {
		if r.Method != http.MethodPost || r.URL.Path != want[i].path || api.bodies[i] != want[i].body || r.URL.Query().Get("api_key") != "key" {
			t.Errorf("call %d: %s %s %s, want POST %s?api_key=key %s", i, r.Method, r.URL, api.bodies[i], want[i].path, want[i].body)
		}
		if cl, err := checker.Check(r.Header.Get("Authorization")); err != nil || !cl.Server {
			t.Errorf("call %d is not made server-side: claims %+v, err %v", i, cl, err)
		}
	}
}

func TestJoinPassesTheAPIsErrorOn(t *testing.T) {
	api := &fakeAPI{status: http.StatusBadRequest, body: `{"code":4,"message":"users don't exist: ann","StatusCode":400,"duration":"0.10ms","more_info":""}`}
	w := serve(t, Config{DevTokens: true, API: api}, http.MethodPost, "/demo/join", `{"user_id": "ann", "room": "lobby"}`)
	if e := sdkError(t, w); w.Code != http.StatusBadRequest || e.Code != apierror.CodeInput || e.Message != "users don't exist: ann" {
		t.Errorf("got %d %+v", w.Code, e)
	}
	if len(api.got) != 1 {
		t.Errorf("the API got %d calls after its error, want 1", len(api.got))
	}
}
