package main

import (
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// syntheticReport holds what a quick run of idle and latency on both
// systems would leave in latest.json.
func syntheticReport() Report {
	rng := rand.New(rand.NewPCG(1, 2))
	rep := Report{Profile: "quick"}
	for _, sys := range []struct {
		name           string
		medianMs, perK float64
	}{{presence, 1.4, 11000}, {centrifuge, 0.7, 23000}} {
		ms := make([]float64, 2000)
		for i := range ms {
			ms[i] = sys.medianMs * math.Exp(0.4*rng.NormFloat64())
		}
		rep.Series = append(rep.Series, Series{Scenario: "latency", System: sys.name, Name: latencySamples, Y: ms, YUnit: "ms"})
		rss := Series{Scenario: "idle", System: sys.name, Name: rssByConns, XUnit: "connections", YUnit: "bytes"}
		for c := 0.0; c <= 15000; c += 2500 {
			rss.X, rss.Y = append(rss.X, c), append(rss.Y, 30<<20+sys.perK*c)
		}
		rep.Series = append(rep.Series, rss)
	}
	return rep
}

func TestWritePlotsDrawsBothPlotsAsPNGs(t *testing.T) {
	dir := t.TempDir()
	got, err := writePlots(dir, syntheticReport())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "latency.png"), filepath.Join(dir, "idle-rss.png")}
	if !slices.Equal(got, want) {
		t.Fatalf("wrote %q, want %q", got, want)
	}
	for _, path := range want {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if b := img.Bounds(); b.Dx() != 768 || b.Dy() != 480 {
			t.Errorf("%s is %dx%d, want 768x480", path, b.Dx(), b.Dy())
		}
	}
}

func TestWritePlotsSkipsAPlotWhoseScenarioDidNotRun(t *testing.T) {
	rep := syntheticReport()
	rep.Series = slices.DeleteFunc(rep.Series, func(s Series) bool { return s.Scenario == "idle" })
	dir := t.TempDir()
	got, err := writePlots(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "latency.png")}; !slices.Equal(got, want) {
		t.Fatalf("wrote %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "idle-rss.png")); !os.IsNotExist(err) {
		t.Fatalf("idle-rss.png: %v, want it not written", err)
	}
}

func TestWritePlotsRejectsAnRSSSeriesWithUnevenAxes(t *testing.T) {
	rep := syntheticReport()
	for i, s := range rep.Series {
		if s.Name == rssByConns {
			rep.Series[i].X = s.X[1:]
		}
	}
	if _, err := writePlots(t.TempDir(), rep); err == nil {
		t.Fatal("writePlots drew an RSS series with fewer x than y; want an error")
	}
}

func TestNinesScaleSpacesEachNineEvenly(t *testing.T) {
	for _, tc := range []struct {
		x, want float64
	}{{0, 0}, {90, 1.0 / 3}, {99, 2.0 / 3}, {99.9, 1}} {
		if got := (ninesScale{}).Normalize(0, 99.9, tc.x); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Normalize(0, 99.9, %v) = %v, want %v", tc.x, got, tc.want)
		}
	}
}

func TestOneTwoFiveLabelsOneTwoAndFiveOfEachDecade(t *testing.T) {
	var labels []string
	for _, tk := range oneTwoFive(0.3, 60) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if want := []string{"0.5", "1", "2", "5", "10", "20", "50"}; !slices.Equal(labels, want) {
		t.Fatalf("labels %q, want %q", labels, want)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 2000: "2,000", 15000: "15,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
