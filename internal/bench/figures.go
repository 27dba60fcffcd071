package bench

import (
	"slices"

	"github.com/snapbpf/snapbpf/internal/policy"
)

// A barFigure is a grouped bar chart: one group per category (function),
// one bar per series in each group.
type barFigure struct {
	Name, Title, YLabel string
	Categories          []string
	Series              []barSeries
}

type barSeries struct {
	Name   string
	Values []Summary // by category
}

// A LineFigure has one panel per function (or per metric), one line per
// series; PlotLines draws it. Other packages (loadgen) draw their line
// figures through it, so every figure of the project looks alike.
type LineFigure struct {
	Name, Title, XLabel, YLabel string
	Panels                      []LinePanel
	// EvenXTicks labels the x axis at even steps instead of at each x
	// value (for time series).
	EvenXTicks bool
}

// A LinePanel is one panel of a LineFigure.
type LinePanel struct {
	Title  string
	Series []LineSeries
}

// A LineSeries is one line of a panel: a median with a min–max bar at
// each x (a Summary of one value draws no bar).
type LineSeries struct {
	Name string
	X    []float64
	Y    []Summary
}

// empty reports whether the figure has nothing to draw.
func (f barFigure) empty() bool {
	for _, s := range f.Series {
		for _, v := range s.Values {
			if v.Valid() {
				return false
			}
		}
	}
	return true
}

func (f LineFigure) empty() bool {
	for _, p := range f.Panels {
		if len(p.Series) > 0 {
			return false
		}
	}
	return true
}

// functionsOf lists the functions of the results: the configured ones
// first, in their order, then any others found in the runs.
func functionsOf(res *Results) []string {
	fns := slices.Clone(res.Config.Functions)
	for _, r := range res.Runs {
		if !slices.Contains(fns, r.Function) {
			fns = append(fns, r.Function)
		}
	}
	return fns
}

// policiesOf lists the policies with latency runs, in Policies() order.
func policiesOf(res *Results) []string { return policiesIn(res, ExpLatency, Policies()) }

// policiesIn lists the policies of all with runs of exp, in that order.
func policiesIn(res *Results, exp string, all []string) []string {
	var out []string
	for _, p := range all {
		if len(res.Select(exp, "", p, 0)) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// concurrencyIn lists the N with runs of exp, ascending.
func concurrencyIn(res *Results, exp string) []int {
	var ns []int
	for _, r := range res.Select(exp, "", "", 0) {
		if !slices.Contains(ns, r.N) {
			ns = append(ns, r.N)
		}
	}
	slices.Sort(ns)
	return ns
}

// figLatency is figure 1: cold end-to-end latency of one VM per function
// and policy, warm as the floor.
func figLatency(res *Results) barFigure {
	f := barFigure{Name: "fig1-latency", Title: "Single-function end-to-end latency, cold (N=1), real VMs",
		YLabel: "end-to-end latency (ms)", Categories: functionsOf(res)}
	return latencyBars(res, f, ExpLatency, policiesOf(res))
}

// latencyBars adds to f one series per policy of exp: N=1 latency.
func latencyBars(res *Results, f barFigure, exp string, pols []string) barFigure {
	for _, p := range pols {
		s := barSeries{Name: p}
		for _, fn := range f.Categories {
			s.Values = append(s.Values, metric(res.Select(exp, fn, p, 1), MetricE2EMs))
		}
		f.Series = append(f.Series, s)
	}
	return f
}

// memoryBasis is what figure 2 divides by: lazy at N=1 of the same
// function, or, without lazy runs, each policy's own N=1.
const memoryBasis = "lazy at N=1 of the same function"

// figMemory is figure 2: host memory for guest RAM against N, normalised.
func figMemory(res *Results) LineFigure {
	f := LineFigure{Name: "fig2-memory", Title: "Memory usage against concurrency, real VMs",
		XLabel: "concurrent VMs (N)", YLabel: "memory / " + "lazy N=1"}
	return memoryLines(res, f, ExpLatency, policiesOf(res))
}

// memoryLines fills f's panels from exp's runs of pols.
func memoryLines(res *Results, f LineFigure, exp string, pols []string) LineFigure {
	for _, fn := range functionsOf(res) {
		base := metric(res.Select(exp, fn, policy.Lazy, 1), MetricTotalBytes)
		panel := LinePanel{Title: fn}
		for _, p := range pols {
			if singleOnly(p) {
				continue
			}
			b := base
			if !b.Valid() {
				b = metric(res.Select(exp, fn, p, 1), MetricTotalBytes)
			}
			if !b.Valid() || b.Median == 0 {
				continue
			}
			s := LineSeries{Name: p}
			for _, n := range concurrencyIn(res, exp) {
				v := metric(res.Select(exp, fn, p, n), MetricTotalBytes)
				if v.Valid() {
					s.X, s.Y = append(s.X, float64(n)), append(s.Y, v.Scale(1/b.Median))
				}
			}
			if len(s.X) > 0 {
				panel.Series = append(panel.Series, s)
			}
		}
		if len(panel.Series) > 0 {
			f.Panels = append(f.Panels, panel)
		}
	}
	return f
}

// figConcurrency is figure 3: mean end-to-end latency of N concurrent
// restores against N.
func figConcurrency(res *Results) LineFigure {
	f := LineFigure{Name: "fig3-concurrency", Title: "Concurrent execution latency, real VMs",
		XLabel: "concurrent VMs (N)", YLabel: "mean end-to-end latency (ms)"}
	return concurrencyLines(res, f, ExpLatency, policiesOf(res))
}

// concurrencyLines fills f's panels from exp's runs of pols.
func concurrencyLines(res *Results, f LineFigure, exp string, pols []string) LineFigure {
	for _, fn := range functionsOf(res) {
		panel := LinePanel{Title: fn}
		for _, p := range pols {
			if singleOnly(p) {
				continue
			}
			s := LineSeries{Name: p}
			for _, n := range concurrencyIn(res, exp) {
				v := metric(res.Select(exp, fn, p, n), MetricE2EMs)
				if v.Valid() {
					s.X, s.Y = append(s.X, float64(n)), append(s.Y, v)
				}
			}
			if len(s.X) > 0 {
				panel.Series = append(panel.Series, s)
			}
		}
		if len(panel.Series) > 0 {
			f.Panels = append(f.Panels, panel)
		}
	}
	return f
}

// Breakdown steps of figure 4.
const (
	stepLinux    = "lazy, no free-page filtering"
	stepFreePage = "lazy + free-page filtering"
	stepSnapBPF  = "snapbpf (+ prefetch)"
)

// figBreakdown is figure 4: Linux as it is, then free pages as holes,
// then the prefetch.
func figBreakdown(res *Results) barFigure {
	f := barFigure{Name: "fig4-breakdown", Title: "Breakdown: cold end-to-end latency (N=1)",
		YLabel: "end-to-end latency (ms)", Categories: functionsOf(res)}
	steps := []struct {
		name, exp, pol string
	}{
		{stepLinux, ExpBreakdown, policy.Lazy},
		{stepFreePage, ExpLatency, policy.Lazy},
		{stepSnapBPF, ExpLatency, policy.SnapBPF},
	}
	for _, st := range steps {
		s := barSeries{Name: st.name}
		for _, fn := range f.Categories {
			s.Values = append(s.Values, metric(res.Select(st.exp, fn, st.pol, 1), MetricE2EMs))
		}
		f.Series = append(f.Series, s)
	}
	return f
}

// figPrefetch is figure 6: throughput of the prefetch and of fio on the
// same requests.
func figPrefetch(res *Results) barFigure {
	f := barFigure{Name: "fig6-prefetch", Title: "Prefetch throughput against fio on the same extents (cold)",
		YLabel: "throughput (MB/s)", Categories: functionsOf(res)}
	for _, p := range []string{SeriesPrefetch, SeriesFio} {
		s := barSeries{Name: seriesLabel(p)}
		for _, fn := range f.Categories {
			s.Values = append(s.Values, metric(res.Select(ExpPrefetch, fn, p, 1), MetricMBps))
		}
		f.Series = append(f.Series, s)
	}
	return f
}

func seriesLabel(p string) string {
	switch p {
	case SeriesPrefetch:
		return "snapbpf prefetch"
	case SeriesFio:
		return "fio replay"
	}
	return p
}
