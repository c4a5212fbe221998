package dashboard

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Metric is one metric of the contract, a row of docs/metrics.md's tables.
type Metric struct {
	Name string
	// Type is counter, gauge or histogram.
	Type   string
	Labels []string
	// From says who exposes it: gateway, worker, api, "every service", or
	// Prometheus (up, made by the scrape itself).
	From string
}

// ExposedBy says whether a service (gateway, worker or api) exposes m.
func (m Metric) ExposedBy(service string) bool {
	return m.From == service || m.From == "every service"
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	backticked = regexp.MustCompile("`([^`]+)`")
)

// ReadContract reads the metric contract: every table row of the markdown
// file at path (docs/metrics.md) whose first cell is a metric name in
// backticks, with the columns metric, type, labels, exposed by, meaning.
func ReadContract(path string) ([]Metric, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Metric
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if !strings.HasPrefix(text, "| `") {
			continue
		}
		cells := strings.Split(text, "|")
		if len(cells) < 7 {
			return nil, fmt.Errorf("%s:%d: want | metric | type | labels | exposed by | meaning |", path, line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		m := Metric{Name: strings.Trim(cells[1], "`"), Type: cells[2], From: cells[4]}
		for _, l := range backticked.FindAllStringSubmatch(cells[3], -1) {
			m.Labels = append(m.Labels, l[1])
		}
		switch {
		case !metricName.MatchString(m.Name):
			return nil, fmt.Errorf("%s:%d: %q is not a metric name", path, line, m.Name)
		case !slices.Contains([]string{"counter", "gauge", "histogram"}, m.Type):
			return nil, fmt.Errorf("%s:%d: %s: type %q, want counter, gauge or histogram", path, line, m.Name, m.Type)
		case m.Type == "counter" && !strings.HasSuffix(m.Name, "_total"):
			return nil, fmt.Errorf("%s:%d: counter %s does not end in _total", path, line, m.Name)
		case m.From == "":
			return nil, fmt.Errorf("%s:%d: %s: who exposes it?", path, line, m.Name)
		case seen[m.Name]:
			return nil, fmt.Errorf("%s:%d: %s listed twice", path, line, m.Name)
		}
		seen[m.Name] = true
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no metrics", path)
	}
	return out, sc.Err()
}

// Resolve finds the contract metric a series name belongs to: the metric
// itself, or a histogram's _bucket, _sum or _count series. A histogram's
// bare name is no series, so it resolves to nothing.
func Resolve(contract []Metric, series string) (Metric, bool) {
	for _, m := range contract {
		if m.Type != "histogram" && m.Name == series {
			return m, true
		}
		if m.Type == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if series == m.Name+suffix {
					return m, true
				}
			}
		}
	}
	return Metric{}, false
}

var (
	// Quoted strings first: a matcher's value may hold any character.
	promString   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
		"and", "or", "unless", "atan2", "inf", "nan"}
)

// MetricNames lists the metric names a PromQL expression (with Grafana's
// $variables) selects, in order of first appearance: every identifier that
// is not a function or aggregation (followed by "("), a keyword, a label
// name (in matchers and by/without/on/ignoring lists) or inside a string,
// a duration or a number. It reads the subset of PromQL the dashboard
// writes; it is no parser.
func MetricNames(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "0123456789.$") {
			continue // part of a number (1e3), a duration or a $variable
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if slices.Contains(promKeywords, strings.ToLower(name)) || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	return out
}

// CheckScrape compares a scrape of /metrics (Prometheus' text format) with
// the contract metrics for which want is true: each must be declared
// (# TYPE) with its type. It returns what differs, one line each. A metric
// with labels appears only once it has a labelled child, so check a process
// that has done some work.
func CheckScrape(contract []Metric, scrape []byte, want func(Metric) bool) []string {
	types := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(scrape))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	var problems []string
	for _, m := range contract {
		if !want(m) {
			continue
		}
		switch got, ok := types[m.Name]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s (%s) is not exposed", m.Name, m.Type))
		case got != m.Type:
			problems = append(problems, fmt.Sprintf("%s is a %s, the contract says %s", m.Name, got, m.Type))
		}
	}
	return problems
}
