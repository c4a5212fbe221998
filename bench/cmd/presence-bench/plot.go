package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The plots' size: 768×480 pixels in PNG (gonum/plot draws them at 96 dpi).
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 5 * vg.Inch
)

// systemStyle is how each system is drawn, in the order plots list them.
var systemStyle = []struct {
	system, label string
	color         color.Color
}{
	{presence, "Presence", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}},
	{centrifuge, "centrifuge (peer)", color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}},
}

// writePlots draws the report's series as PNGs in dir and returns their
// paths: latency.png (the latency scenario's transitions) and idle-rss.png
// (the server's RSS as the idle clients connect). A plot whose series the
// report lacks (a -run without its scenario) is not drawn, and the PNG of
// an earlier run stays.
func writePlots(dir string, rep Report) ([]string, error) {
	var written []string
	for _, pl := range []struct {
		file string
		draw func(Report) (*plot.Plot, error)
	}{
		{"latency.png", latencyPlot},
		{"idle-rss.png", rssPlot},
	} {
		p, err := pl.draw(rep)
		if err != nil {
			return written, fmt.Errorf("%s: %w", pl.file, err)
		}
		if p == nil {
			continue
		}
		path := filepath.Join(dir, pl.file)
		if err := p.Save(plotWidth, plotHeight, path); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// series returns the report's series of a scenario by name, one per
// system in systemStyle's order, with each system's style index.
func (r Report) series(scenario, name string) (ss []Series, styles []int) {
	for i, st := range systemStyle {
		for _, s := range r.Series {
			if s.Scenario == scenario && s.Name == name && s.System == st.system && len(s.Y) > 0 {
				ss, styles = append(ss, s), append(styles, i)
				break
			}
		}
	}
	return ss, styles
}

// latencyPlot draws each system's transition latencies as a percentile
// plot: latency on a log axis, the percentile on an axis of nines, so
// that p99 and p999 get as much room as the median. Presence's latency
// targets are marked. Nil without latency samples.
func latencyPlot(rep Report) (*plot.Plot, error) {
	ss, styles := rep.series("latency", latencySamples)
	if len(ss) == 0 {
		return nil, nil
	}
	p := newPlot()
	var counts string
	for k, s := range ss {
		st := systemStyle[styles[k]]
		ms := slices.Clone(s.Y)
		slices.Sort(ms)
		pts := make(plotter.XYs, len(ms))
		for i, v := range ms {
			// The (i+½)/n quantile: never 100, which the nines axis cannot hold.
			pts[i] = plotter.XY{X: max(v, 0.001), Y: 100 * (float64(i) + 0.5) / float64(len(ms))}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = st.color, vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(st.label, l)
		if counts != "" {
			counts += ", "
		}
		counts += s.System + " " + thousands(len(ms))
	}
	targets, err := plotter.NewScatter(plotter.XYs{{X: 2, Y: 50}, {X: 10, Y: 99}, {X: 50, Y: 99.9}})
	if err != nil {
		return nil, err
	}
	targets.Shape, targets.Radius, targets.Color = draw.CrossGlyph{}, vg.Points(4), color.Black
	p.Add(targets)
	p.Legend.Add("Presence's targets (p50, p99, p999)", targets)
	p.Title.Text = fmt.Sprintf("Transition latency, member's connect or close → watcher (%s profile; samples: %s)", rep.Profile, counts)
	p.X.Label.Text = "latency (ms, log scale)"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.TickerFunc(oneTwoFive)
	p.Y.Label.Text = "percentile"
	p.Y.Min = 0
	p.Y.Scale, p.Y.Tick.Marker = ninesScale{}, plot.TickerFunc(ninesTicks)
	// Bottom right: the curves rise from the bottom left to the top right.
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(8), vg.Points(16)
	return p, nil
}

// rssPlot draws each system's settled RSS against its idle connections,
// with the 20 KB per connection target over Presence's RSS before the
// first. Nil without an RSS series.
func rssPlot(rep Report) (*plot.Plot, error) {
	ss, styles := rep.series("idle", rssByConns)
	if len(ss) == 0 {
		return nil, nil
	}
	p := newPlot()
	maxConns := 0.0
	for k, s := range ss {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("%s's %s: %d x and %d y", s.System, s.Name, len(s.X), len(s.Y))
		}
		st := systemStyle[styles[k]]
		pts := make(plotter.XYs, len(s.Y))
		for i := range s.Y {
			pts[i] = plotter.XY{X: s.X[i], Y: s.Y[i] / (1 << 20)}
			maxConns = max(maxConns, s.X[i])
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = st.color, vg.Points(1.5)
		sc.Color, sc.Shape = st.color, draw.CircleGlyph{}
		p.Add(l, sc)
		p.Legend.Add(st.label, l, sc)
	}
	if ss[0].System == presence {
		base := ss[0].Y[0]
		t, err := plotter.NewLine(plotter.XYs{{X: 0, Y: base / (1 << 20)}, {X: maxConns, Y: (base + 20000*maxConns) / (1 << 20)}})
		if err != nil {
			return nil, err
		}
		t.Color, t.Dashes = color.Gray{Y: 0x60}, []vg.Length{vg.Points(5), vg.Points(3)}
		p.Add(t)
		p.Legend.Add("target: 20 KB per connection over Presence's RSS before", t)
	}
	p.Title.Text = fmt.Sprintf("Server RSS (VmRSS, settled) with idle connections (%s profile)", rep.Profile)
	p.X.Label.Text = "connections"
	p.X.Min = 0
	p.X.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		ts := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ts {
			if ts[i].Label != "" {
				ts[i].Label = thousands(int(ts[i].Value))
			}
		}
		return ts
	})
	p.Y.Label.Text = "RSS (MiB)"
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(8)
	return p, nil
}

func newPlot() *plot.Plot {
	p := plot.New()
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Title.Padding = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p
}

// ninesScale places a percentile x at -log10(1 - x/100): 0, 90, 99 and
// 99.9 are evenly spaced.
type ninesScale struct{}

func nines(x float64) float64 { return -math.Log10(1 - min(x, 99.9999)/100) }

func (ninesScale) Normalize(min, max, x float64) float64 {
	lo, hi := nines(min), nines(max)
	if hi == lo {
		return 0
	}
	return (nines(x) - lo) / (hi - lo)
}

// ninesTicks labels 0, 50, 90, 99, 99.9, … up to max.
func ninesTicks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for _, v := range []float64{0, 50, 90, 99, 99.9, 99.99, 99.999} {
		if v >= min && v <= max {
			ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	return ts
}

// oneTwoFive labels 1, 2 and 5 of each decade between min and max and
// marks the other digits, for a log axis.
func oneTwoFive(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for dec := math.Pow10(int(math.Floor(math.Log10(min)))); dec <= max; dec *= 10 {
		for d := 1; d < 10; d++ {
			v := float64(d) * dec
			if v < min || v > max {
				continue
			}
			t := plot.Tick{Value: v}
			if d == 1 || d == 2 || d == 5 {
				t.Label = strconv.FormatFloat(v, 'g', 4, 64)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// thousands formats n with commas: 15,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
