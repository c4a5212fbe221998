package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// shot is what one picture draws: a Prometheus and a time range.
type shot struct {
	prometheus    string
	start, end    time.Time
	job, instance string
	// source tells where the numbers come from, for the picture's header.
	source string
	http   *http.Client
}

func newShot(prometheus string, start, end time.Time) shot {
	return shot{prometheus: strings.TrimRight(prometheus, "/"), start: start, end: end, job: ".*", instance: ".*",
		http: &http.Client{Timeout: 30 * time.Second}}
}

// The parts of the dashboard JSON a picture needs.
type dashboardFile struct {
	Title  string `json:"title"`
	Panels []struct {
		Type        string  `json:"type"`
		Title       string  `json:"title"`
		GridPos     gridPos `json:"gridPos"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

type gridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// panelData is one panel as preview.js draws it: series aligned on X
// (seconds), nil where Prometheus had no sample.
type panelData struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Unit    string   `json:"unit,omitempty"`
	GridPos gridPos  `json:"gridPos"`
	X       []int64  `json:"x,omitempty"`
	Series  []series `json:"series,omitempty"`
	Error   string   `json:"error,omitempty"`
}

type series struct {
	Name   string     `json:"name"`
	Values []*float64 `json:"values"`
}

// page is the filled-in preview, ready for Chromium.
type page struct {
	html             []byte
	rows             int // the grid's height, in rows of 30 px
	panels, withData int
}

// variables are Grafana's, as the picture fills them in.
type variables struct {
	job, instance string
	// step is the query resolution ($__interval); rate is
	// $__rate_interval: max(step + scrape interval, 4 × scrape interval),
	// as Grafana computes it.
	step, rate time.Duration
}

func (v variables) expand(expr string) string {
	sec := func(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) + "s" }
	return strings.NewReplacer(
		"${__rate_interval}", sec(v.rate), "$__rate_interval", sec(v.rate),
		"${__interval}", sec(v.step), "$__interval", sec(v.step),
		"${instance}", v.instance, "$instance", v.instance,
		"${job}", v.job, "$job", v.job,
	).Replace(expr)
}

func rateInterval(step, scrape time.Duration) time.Duration {
	return max(step+scrape, 4*scrape)
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// legend names a series as Grafana does: the target's legend format with
// {{label}} filled in, or the series' labels.
func legend(format string, labels map[string]string) string {
	if format != "" {
		return legendLabel.ReplaceAllStringFunc(format, func(m string) string {
			return labels[legendLabel.FindStringSubmatch(m)[1]]
		})
	}
	var parts []string
	for k, v := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

// get asks Prometheus' HTTP API and decodes its data into out.
func (s shot) get(ctx context.Context, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.prometheus+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %d, %w", path, resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s", body.Error)
	}
	return json.Unmarshal(body.Data, out)
}

// scrapeInterval is the Prometheus' global scrape interval, from its
// configuration.
func (s shot) scrapeInterval(ctx context.Context) (time.Duration, error) {
	var cfg struct {
		YAML string `json:"yaml"`
	}
	if err := s.get(ctx, "/api/v1/status/config", nil, &cfg); err != nil {
		return 0, fmt.Errorf("prometheus configuration: %w", err)
	}
	m := regexp.MustCompile(`(?m)^\s+scrape_interval:\s*(\S+)`).FindStringSubmatch(cfg.YAML)
	if m == nil {
		return time.Minute, nil // Prometheus' default
	}
	return parsePromDuration(m[1])
}

// parsePromDuration reads the durations Prometheus writes (1m, 15s, 1m30s).
func parsePromDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") || strings.HasSuffix(s, "w") || strings.HasSuffix(s, "y") {
		return 0, fmt.Errorf("scrape interval %q: too long to draw", s)
	}
	return time.ParseDuration(s)
}

func (s shot) version(ctx context.Context) string {
	var b struct {
		Version string `json:"version"`
	}
	if err := s.get(ctx, "/api/v1/status/buildinfo", nil, &b); err != nil || b.Version == "" {
		return ""
	}
	return " " + strings.TrimSuffix(b.Version, "+ds")
}

// queryRange runs expr over the shot's range and aligns every series on xs.
func (s shot) queryRange(ctx context.Context, expr, format string, step time.Duration, xs []int64) ([]series, error) {
	q := url.Values{"query": {expr}, "start": {strconv.FormatInt(xs[0], 10)}, "end": {strconv.FormatInt(xs[len(xs)-1], 10)},
		"step": {strconv.Itoa(int(step.Seconds()))}}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	if err := s.get(ctx, "/api/v1/query_range", q, &data); err != nil {
		return nil, err
	}
	var out []series
	for _, r := range data.Result {
		sr := series{Name: legend(format, r.Metric), Values: make([]*float64, len(xs))}
		for _, pair := range r.Values {
			t, _ := pair[0].(float64)
			text, _ := pair[1].(string)
			v, err := strconv.ParseFloat(text, 64)
			i := int(math.Round((t - float64(xs[0])) / step.Seconds()))
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || i < 0 || i >= len(xs) {
				continue
			}
			sr.Values[i] = &v
		}
		out = append(out, sr)
	}
	return out, nil
}

// page runs every panel's queries and fills in the preview.
func (s shot) page(ctx context.Context, o options) (page, error) {
	b, err := os.ReadFile(o.dashboard)
	if err != nil {
		return page{}, err
	}
	var d dashboardFile
	if err := json.Unmarshal(b, &d); err != nil {
		return page{}, fmt.Errorf("%s: %w", o.dashboard, err)
	}
	scrape, err := s.scrapeInterval(ctx)
	if err != nil {
		return page{}, err
	}
	// About 300 points a panel, never finer than the scrapes.
	step := max(s.end.Sub(s.start)/300, scrape).Round(time.Second)
	v := variables{job: s.job, instance: s.instance, step: step, rate: rateInterval(step, scrape)}
	var xs []int64
	for t := s.start.Truncate(step); !t.After(s.end); t = t.Add(step) {
		xs = append(xs, t.Unix())
	}
	var p page
	var panels []panelData
	for _, dp := range d.Panels {
		pd := panelData{Type: dp.Type, Title: dp.Title, Unit: dp.FieldConfig.Defaults.Unit, GridPos: dp.GridPos}
		p.rows = max(p.rows, dp.GridPos.Y+dp.GridPos.H)
		if dp.Type != "row" {
			p.panels++
			pd.X = xs
			for _, t := range dp.Targets {
				sr, err := s.queryRange(ctx, v.expand(t.Expr), t.LegendFormat, step, xs)
				if err != nil {
					pd.Error = err.Error()
					break
				}
				pd.Series = append(pd.Series, sr...)
			}
			slices.SortStableFunc(pd.Series, func(a, b series) int { return strings.Compare(a.Name, b.Name) })
			if slices.ContainsFunc(pd.Series, func(sr series) bool { return slices.ContainsFunc(sr.Values, func(v *float64) bool { return v != nil }) }) {
				p.withData++
			}
		}
		panels = append(panels, pd)
	}
	data, err := json.Marshal(map[string]any{"panels": panels})
	if err != nil {
		return page{}, err
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(o.preview, name))
		if err != nil && strings.HasPrefix(name, "node_modules") {
			return "", fmt.Errorf("%w (run: cd %s && npm ci)", err, o.preview)
		}
		return string(b), err
	}
	files := map[string]string{}
	for _, name := range []string{"preview.html", "preview.css", "preview.js", "node_modules/uplot/dist/uPlot.min.css", "node_modules/uplot/dist/uPlot.iife.min.js"} {
		if files[name], err = read(name); err != nil {
			return page{}, err
		}
	}
	tmpl, err := template.New("preview").Parse(files["preview.html"])
	if err != nil {
		return page{}, err
	}
	utc := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") }
	var out strings.Builder
	err = tmpl.Execute(&out, map[string]any{
		"Title": d.Title,
		"Vars": []struct{ Name, Value string }{
			{"Data source", "Prometheus" + s.version(ctx)},
			{"Job", choice(s.job)},
			{"Instance", choice(s.instance)},
		},
		"Range": utc(s.start) + " to " + utc(s.end) + " UTC",
		"Note": fmt.Sprintf("Preview of %s: each panel's own query run on Prometheus %s, drawn by %s with uPlot; not a screenshot of Grafana.",
			filepath.ToSlash(o.dashboard), s.source, filepath.ToSlash(o.preview)),
		"Data":     template.JS(data),
		"CSS":      template.CSS(files["preview.css"]),
		"JS":       template.JS(files["preview.js"]),
		"UPlotCSS": template.CSS(files["node_modules/uplot/dist/uPlot.min.css"]),
		"UPlotJS":  template.JS(files["node_modules/uplot/dist/uPlot.iife.min.js"]),
	})
	p.html = []byte(out.String())
	return p, err
}

func choice(re string) string {
	if re == ".*" {
		return "All"
	}
	return re
}

// findChromium returns path, or Chromium or Chrome on $PATH.
func findChromium(path string) (string, error) {
	if path != "" {
		return exec.LookPath(path)
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium not found: apt-get install chromium (Debian), or -chromium PATH")
}

// screenshot has headless Chromium load the page from a file (it needs no
// network: everything is inline) and write the whole grid to out.
func screenshot(ctx context.Context, chromium string, p page, width int, out string) error {
	dir, err := os.MkdirTemp("", "presence-dashshot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "preview.html")
	if err := os.WriteFile(file, p.html, 0o644); err != nil {
		return err
	}
	// Header, then the grid: rows of 30 px with 8 px between, as
	// preview.js lays them out.
	height := 110 + p.rows*38 + 16
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--hide-scrollbars", "--force-device-scale-factor=1",
		fmt.Sprintf("--window-size=%d,%d", width, height), "--virtual-time-budget=5000",
		"--screenshot="+abs, "file://"+file)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium: %w\n%s", err, b)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("chromium wrote no screenshot: %w", err)
	}
	return nil
}
