package chaos

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Result is what one scenario measured and what it found wrong.
type Result struct {
	// Scenario names the failure ("kill -9 gateway").
	Scenario string
	// Setup says what ran: sizes and settings.
	Setup string
	// Measured is the headline measurement, for the table.
	Measured string
	// Expected is the bound it is held to.
	Expected string
	// Violations are broken invariants: each fails a test.
	Violations []string
	// Findings are bugs the scenario observed but does not assert (a test
	// under the chaosbug build tag does): reported in the table's notes.
	Findings []Finding
	// Took is how long the scenario ran.
	Took time.Duration

	mu sync.Mutex
}

// Violate records a broken invariant.
func (r *Result) Violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.Violations) < 50 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	} else if len(r.Violations) == 50 {
		r.Violations = append(r.Violations, "… more violations left out")
	}
}

// Finding is a bug a scenario observed without asserting it.
type Finding struct {
	// Kind names the bug, for the chaosbug test that asserts it.
	Kind string
	Text string
}

// Find records a bug observed but not asserted.
func (r *Result) Find(kind, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Findings = append(r.Findings, Finding{Kind: kind, Text: fmt.Sprintf(format, args...)})
}

// Ok says whether no invariant broke.
func (r *Result) Ok() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.Violations) == 0
}

// Table renders results as a markdown table, then the violations and bugs
// found (a few examples of each kind).
func Table(results []*Result) string {
	var b strings.Builder
	b.WriteString("| failure | setup | measured | expected | result |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	var notes []string
	for _, r := range results {
		status := "ok"
		if len(r.Violations) > 0 {
			status = fmt.Sprintf("**%d violation(s)**", len(r.Violations))
		}
		kinds := map[string][]string{}
		var order []string
		for _, f := range r.Findings {
			if _, ok := kinds[f.Kind]; !ok {
				order = append(order, f.Kind)
			}
			kinds[f.Kind] = append(kinds[f.Kind], f.Text)
		}
		for _, k := range order {
			status += fmt.Sprintf("; bug: %s", k)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Scenario, cell(r.Setup), cell(r.Measured), cell(r.Expected), status)
		for i, v := range r.Violations {
			if i == 3 {
				notes = append(notes, fmt.Sprintf("- %s: … %d more violations", r.Scenario, len(r.Violations)-3))
				break
			}
			notes = append(notes, fmt.Sprintf("- %s: violation: %s", r.Scenario, v))
		}
		for _, k := range order {
			for i, text := range kinds[k] {
				if i == 3 {
					notes = append(notes, fmt.Sprintf("- %s: bug (%s): … %d more", r.Scenario, k, len(kinds[k])-3))
					break
				}
				notes = append(notes, fmt.Sprintf("- %s: bug (%s): %s", r.Scenario, k, text))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// Dur formats a duration for the table: ms below a second, else seconds
// with two decimals.
func Dur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// Quantile is the q-quantile (0..1, nearest rank) of ds.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// P50Max formats the median and the maximum of ds.
func P50Max(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s, max %s", Dur(Quantile(ds, 0.5)), Dur(slices.Max(ds)))
}
