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

func TestTableComparesWithThePeerAndSaysWhetherEachTargetHolds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		results []Result
		want    []string
	}{
		{
			"idle under 20 KB and 0.6× the peer holds",
			[]Result{{"idle", presence, "rss_per_conn_bytes", 15000, "bytes"}, {"idle", centrifuge, "rss_per_conn_bytes", 30000, "bytes"}},
			[]string{"| idle | rss_per_conn_bytes | 15000.00 bytes | 30000.00 bytes | 0.50× | ≤ 20 KB and ≤ 0.6× peer (holds) |"},
		},
		{
			"idle under 20 KB but above 0.6× the peer misses",
			[]Result{{"idle", presence, "rss_per_conn_bytes", 19000, "bytes"}, {"idle", centrifuge, "rss_per_conn_bytes", 20000, "bytes"}},
			[]string{"(misses)"},
		},
		{
			"a relative target without the peer is not judged",
			[]Result{{"idle", presence, "rss_per_conn_bytes", 19000, "bytes"}},
			[]string{"| 19000.00 bytes | — | — | ≤ 20 KB and ≤ 0.6× peer (no peer measured) |"},
		},
		{
			"churn needs 20,000/s and 1.5× the peer",
			[]Result{{"churn", presence, "transitions_per_sec", 24000, "transitions/s"}, {"churn", centrifuge, "transitions_per_sec", 20000, "transitions/s"}},
			[]string{"1.20× | ≥ 20,000/s and ≥ 1.5× peer (misses)"},
		},
		{
			"absolute targets need no peer",
			[]Result{{"storm", presence, "converge_s", 4, "s"}, {"fanout", presence, "last_delivery_ms", 300, "ms"}},
			[]string{"≤ 10 s (holds)", "≤ 250 ms (misses)"},
		},
		{
			"under attack, within twice the idle latency holds and past it misses",
			[]Result{{"hostile", presence, "p50_ratio", 1.5, "×"}, {"hostile", presence, "p99_ratio", 2.5, "×"}},
			[]string{"| hostile | p50_ratio | 1.50 × | — | — | ≤ 2× idle (holds) |", "| hostile | p99_ratio | 2.50 × | — | — | ≤ 2× idle (misses) |"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printTable(&b, Report{Profile: "quick", Results: tc.results})
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table\n%s\nlacks %q", b.String(), w)
				}
			}
		})
	}
}
