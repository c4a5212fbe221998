package allinone

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/presencehq/presence/allinone/demo"
)

// demoSDK is the bundle make demo-sdk builds, as seen from this package.
const demoSDK = "../e2e/demo-sdk/stream-chat.js"

// TestDemoPage opens the demo page of allinone/demo in headless Chromium, as
// three users in three tabs of one room, and checks what the first one sees:
// the others come online with their status, a status change shows up live,
// and a user whose tab closes goes offline with "last active …". Its
// screenshot is the README's (-update-docs rewrites docs/img/demo.png).
//
// `make test` installs Debian's chromium and sets PRESENCE_BROWSER; without
// it the test skips. It builds the SDK's bundle first (make demo-sdk), which
// the test needs: Presence does not ship the SDK.
func TestDemoPage(t *testing.T) {
	browser := os.Getenv("PRESENCE_BROWSER")
	if browser == "" {
		t.Skip("the demo page's browser test needs Chromium: set PRESENCE_BROWSER=/usr/bin/chromium (make test installs Debian's chromium and sets it)")
	}
	if _, err := demo.SDKVersion(demoSDK); err != nil {
		t.Fatalf("the demo page's browser test runs the SDK's bundle, which make demo-sdk builds (make test does): %v", err)
	}
	p := startForTest(t, Config{DevTokens: true, DemoSDK: demoSDK})
	// The page with development tokens off, and the page without its SDK,
	// each served alone.
	off := httptest.NewServer(demo.Handler(demo.Config{APIKey: "e2e-key", APISecret: "unused", SDKFile: demoSDK}))
	t.Cleanup(off.Close)
	noSDK := httptest.NewServer(demo.Handler(demo.Config{APIKey: "e2e-key", APISecret: "unused", DevTokens: true, SDKFile: filepath.Join(t.TempDir(), "stream-chat.js")}))
	t.Cleanup(noSDK.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	alice := openBrowser(t, ctx, browser)
	room := p.HTTPURL() + "/demo/?room=lobby"

	pageJoin(t, alice, room, "alice", "Writing the docs")
	pageWait(t, alice, "alice sees herself online", shownOnline("alice", true))

	bob, closeBob := newTab(t, alice)
	pageJoin(t, bob, room, "bob", "Going to the gym")
	pageWait(t, alice, "alice sees bob come online with his status", shownOnline("bob", true)+` && `+shownStatus("bob", "Going to the gym"))

	carol, _ := newTab(t, alice)
	pageJoin(t, carol, room, "carol", "In a meeting")
	pageWait(t, alice, "alice sees carol come online", shownOnline("carol", true)+` && `+shownStatus("carol", "In a meeting"))
	pageDo(t, carol, "carol sets a new status",
		chromedp.SetValue(chromedp.CSS(`#status [name=status]`), "Back at my desk"),
		chromedp.Click(chromedp.CSS(`#status button[type=submit]`)))
	pageWait(t, alice, "alice sees carol's new status", shownStatus("carol", "Back at my desk"))

	closeBob() // closes bob's tab, and so his socket
	pageWait(t, alice, "alice sees bob go offline, with when he was last active", shownOnline("bob", false)+
		` && `+shownMember("bob")+`.querySelector('.seen').textContent.startsWith('last active ')`+
		` && `+shownStatus("bob", "Going to the gym"))
	pageWait(t, alice, "the room counts who is online", `document.querySelector('#count').textContent === '2 online of 3'`)

	png, err := chromedp.Run(alice, chromedp.ScreenshotScale(chromedp.CSS("main"), 2)) // sharp on high-density screens
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.ArtifactDir(), "demo.png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("alice's page: %s", file)
	if *updateDocs {
		if err := os.WriteFile("../docs/img/demo.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Without development tokens the page signs no one in and says how to
	// turn them on.
	offTab, _ := newTab(t, alice)
	pageDo(t, offTab, "open the page of a server without development tokens", chromedp.Navigate(off.URL+"/demo/"))
	pageWait(t, offTab, "the page says how to turn development tokens on",
		`!document.querySelector('#off').hidden && document.querySelector('#join').hidden`+
			` && document.querySelector('#no-sdk').hidden`+
			` && document.querySelector('#off').textContent.includes('make demo')`)

	// Without the SDK's bundle the page still loads, signs no one in, and
	// says how to get the SDK.
	noSDKTab, _ := newTab(t, alice)
	pageDo(t, noSDKTab, "open the page of a server without the SDK's bundle", chromedp.Navigate(noSDK.URL+"/demo/"))
	pageWait(t, noSDKTab, "the page says the SDK is not shipped and how to get it",
		`!document.querySelector('#no-sdk').hidden && document.querySelector('#join').hidden`+
			fmt.Sprintf(` && document.querySelector('#no-sdk').textContent.includes(%q)`, demo.ErrNoSDK.Error()))
}

// openBrowser starts headless Chromium (the flags this machine needs: no
// sandbox as root, no GPU, no network of its own) and returns its first tab.
// When the test ends the browser is stopped, and the test fails if any of
// its processes is left.
func openBrowser(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(720, 900),
	)
	alloc, stop := chromedp.NewExecAllocator(ctx, opts...)
	tab, closeTab := chromedp.NewContext(alloc)
	if err := chromedp.Do(tab); err != nil { // starts the browser
		stop()
		t.Fatalf("starting %s: %v", path, err)
	}
	proc := chromedp.FromContext(tab).Browser.Process()
	dataDir := userDataDir(proc.Pid)
	if dataDir == "" || len(processesWith("--user-data-dir="+dataDir)) == 0 {
		stop()
		t.Fatalf("cannot tell the browser's processes by their --user-data-dir (pid %d)", proc.Pid)
	}
	t.Cleanup(func() {
		closeTab()
		stop() // kills the browser and waits for it
		if left := processesWith("--user-data-dir=" + dataDir); len(left) > 0 {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("browser processes left running after the test: %v (killed now)", left)
		}
	})
	return tab
}

// userDataDir is the --user-data-dir of process pid, which every process of
// one browser shares.
func userDataDir(pid int) string {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
		if dir, ok := strings.CutPrefix(string(arg), "--user-data-dir="); ok {
			return dir
		}
	}
	return ""
}

// processesWith lists the processes with arg in their command line.
func processesWith(arg string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for a := range bytes.SplitSeq(cmdline, []byte{0}) {
			if string(a) == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// pageJoin opens the page in tab and joins its room as user with status,
// typing into the form as a person would.
func pageJoin(t *testing.T, tab context.Context, url, user, status string) {
	t.Helper()
	pageDo(t, tab, user+" opens the page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#join")))
	pageDo(t, tab, user+" joins",
		chromedp.SendKeys(chromedp.CSS(`#join [name=user]`), user),
		chromedp.SendKeys(chromedp.CSS(`#join [name=status]`), status),
		chromedp.Click(chromedp.CSS(`#join button`)))
	pageWait(t, tab, user+" is in the room", `!document.querySelector('#room').hidden`)
}

// newTab opens a tab, in a window of its own, in the browser of parent.
func newTab(t *testing.T, parent context.Context) (tab context.Context, closeTab context.CancelFunc) {
	t.Helper()
	tab, closeTab = chromedp.NewContext(parent)
	t.Cleanup(closeTab)
	// The first run opens the tab and ties it to the context it gets: the
	// test's, not one with the deadline of a single step.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return tab, closeTab
}

func pageDo(t *testing.T, tab context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pageWait polls the page in tab until the JavaScript expression holds, or
// fails the test with what the page shows. The polling runs on a timer, not
// on animation frames, which a tab in the background does not get.
func pageWait(t *testing.T, tab context.Context, what, expr string) {
	t.Helper()
	_, err := chromedp.Run(tab, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		shown, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
		t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, shown)
	}
}

func shownMember(user string) string {
	return fmt.Sprintf(`document.querySelector('#members li[data-user=%q]')`, user)
}

func shownOnline(user string, on bool) string {
	return fmt.Sprintf(`%s?.dataset.online === '%t'`, shownMember(user), on)
}

func shownStatus(user, status string) string {
	return fmt.Sprintf(`%s?.querySelector('.status').textContent === %q`, shownMember(user), status)
}
