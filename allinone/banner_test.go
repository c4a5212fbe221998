package allinone

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/presencehq/presence/allinone/demo"
)

// TestBannerSaysWhatTheDemoPageNeeds: make run prints the demo page's
// address, and what it lacks, its SDK (which Presence does not ship) first.
func TestBannerSaysWhatTheDemoPageNeeds(t *testing.T) {
	p := startForTest(t, Config{})
	sdk := filepath.Join(t.TempDir(), "stream-chat.js")
	if err := os.WriteFile(sdk, []byte("/* stream-chat 9.1.2, a stand-in for tests */\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "stream-chat.js")
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"without the SDK it says how to get it", Config{DemoSDK: missing, DevTokens: true}, []string{demo.ErrNoSDK.Error(), missing}},
		{"with the SDK and dev tokens off it says how to turn them on", Config{DemoSDK: sdk}, []string{"needs development tokens: make demo"}},
		{"with the SDK and dev tokens on it is ready", Config{DemoSDK: sdk, DevTokens: true}, []string{"open it in two browser tabs", "Development tokens are ON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printBanner(&b, tt.cfg, p)
			for _, want := range append(tt.want, p.HTTPURL()+"/demo/") {
				if !strings.Contains(b.String(), want) {
					t.Errorf("the banner lacks %q:\n%s", want, b.String())
				}
			}
		})
	}
}
