package demo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/presencehq/presence/pkg/apierror"
)

// The stream-chat SDK is not Presence's to ship: its licence (Stream.io's
// Source Code License Agreement, in its npm package) is for Stream's
// customers. So the page's SDK is never embedded here, nor committed; each
// user downloads the pinned version from npm and bundles it on their own
// machine (make demo-sdk, e2e/build-demo-sdk.mjs), and the handler serves
// that one file, Config.SDKFile, at /demo/stream-chat.js.

// ErrNoSDK says that the SDK bundle is not there, and how to make it.
var ErrNoSDK = errors.New("the demo needs the stream-chat SDK, which Presence does not ship (its licence): run `make demo-sdk` (needs Node.js and npm)")

// MaxSDKBytes bounds the bundle the handler serves, about three times the
// size of stream-chat 9's minified bundle: the page loads it whole on every
// visit, and a path set by mistake to a big file is not read.
const MaxSDKBytes = 1 << 20

// openSDK opens the bundle at path, which must be a regular file of at most
// MaxSDKBytes whose first line names the version of the SDK it bundles
// (build-demo-sdk.mjs writes "/* stream-chat 9.53.0, ..."). A missing file
// (or no path) is ErrNoSDK, wrapped with where it was looked for.
func openSDK(path string) (f *os.File, info fs.FileInfo, version string, err error) {
	if path == "" {
		return nil, nil, "", fmt.Errorf("%w; no file is set (-demo-sdk)", ErrNoSDK)
	}
	// Stat first: opening a named pipe would wait for a writer.
	if info, err = os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "", fmt.Errorf("%w; there is no %s (-demo-sdk)", ErrNoSDK, path)
	} else if err != nil {
		return nil, nil, "", err
	} else if !info.Mode().IsRegular() {
		return nil, nil, "", fmt.Errorf("%s is not a regular file", path)
	}
	if f, err = os.Open(path); err != nil {
		return nil, nil, "", err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if info, err = f.Stat(); err != nil {
		return nil, nil, "", err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, "", fmt.Errorf("%s is not a regular file", path)
	}
	if info.Size() > MaxSDKBytes {
		return nil, nil, "", fmt.Errorf("%s has %d bytes, more than the %d a bundle of the SDK may have", path, info.Size(), MaxSDKBytes)
	}
	head := make([]byte, 256)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, "", fmt.Errorf("reading %s: %w", path, err)
	}
	line, _, _ := bytes.Cut(head[:n], []byte("\n"))
	rest, ok := bytes.CutPrefix(line, []byte("/* stream-chat "))
	v, _, _ := bytes.Cut(rest, []byte(","))
	if !ok || len(v) == 0 || len(v) > 64 || bytes.ContainsAny(v, " \t\r\"'<>*/") {
		return nil, nil, "", fmt.Errorf("%s does not start with the line build-demo-sdk.mjs writes (/* stream-chat <version>, ...): rebuild it with make demo-sdk", path)
	}
	return f, info, string(v), nil
}

// SDKVersion is the version of the stream-chat SDK in the bundle at path,
// as its first line names it. The error is ErrNoSDK when there is no
// bundle, and says what is wrong with one that cannot be served.
func SDKVersion(path string) (string, error) {
	f, _, version, err := openSDK(path)
	if err != nil {
		return "", err
	}
	f.Close()
	return version, nil
}

// sdk is GET /demo/stream-chat.js: the one file Config.SDKFile names, never
// a path taken from the request.
func (d *demo) sdk(w http.ResponseWriter, r *http.Request) {
	f, info, _, err := openSDK(d.cfg.SDKFile)
	if err != nil {
		writeError(w, time.Now(), apierror.NotFound("%s", sdkProblem(err)))
		return
	}
	defer f.Close()
	// Bounded by the size seen when opening, should the file grow since.
	http.ServeContent(w, r, "stream-chat.js", info.ModTime(), io.NewSectionReader(f, 0, info.Size()))
}

// sdkProblem is what the page says when the bundle cannot be served. The
// page is public with make run's defaults, so it names no path: the reason
// in full, with the path, is for the server's banner (SDKVersion's error).
func sdkProblem(err error) string {
	if errors.Is(err, ErrNoSDK) {
		return ErrNoSDK.Error()
	}
	return "the demo's stream-chat bundle is not one make demo-sdk built: run `make demo-sdk` again (needs Node.js and npm)"
}
