package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestVmRSSReadsThisProcess(t *testing.T) {
	rss, err := vmRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("vmRSS = %d, %v; want at least a MiB", rss, err)
	}
}

func TestTableSaysWhetherTheIdleTargetHolds(t *testing.T) {
	for _, tc := range []struct {
		perConn float64
		want    string
	}{{19000, "≤ 20 KB (holds)"}, {79000, "≤ 20 KB (misses)"}} {
		var b bytes.Buffer
		printTable(&b, Report{Profile: "quick", Results: []Result{{Scenario: "idle", System: "presence", Metric: "rss_per_conn_bytes", Value: tc.perConn, Unit: "bytes"}}})
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%v bytes per connection: table\n%s\nlacks %q", tc.perConn, b.String(), tc.want)
		}
	}
}
