package loadgen

import (
	"github.com/snapbpf/snapbpf/internal/bench"
)

// one is a single value as a bench.Summary (no spread to draw).
func one(v float64) bench.Summary { return bench.Summary{N: 1, Median: v, Min: v, Max: v} }

// Plot draws the runs (one, or several of the same trace side by side)
// into dir/NAME.svg and .png through the bench's line plots: latency p99
// per arrival second, successful requests per second, host memory used
// and, when sampled, the service's instances and the memory it says its
// functions use.
func Plot(dir, name string, runs []*Report) ([]string, error) {
	label := (*Report).Label
	panel := func(title string, xy func(r *Report) ([]float64, []float64)) bench.LinePanel {
		p := bench.LinePanel{Title: title}
		for _, r := range runs {
			x, y := xy(r)
			if len(x) == 0 {
				continue
			}
			s := bench.LineSeries{Name: label(r), X: x}
			for _, v := range y {
				s.Y = append(s.Y, one(v))
			}
			p.Series = append(p.Series, s)
		}
		return p
	}
	perSecond := func(v func(Second) (float64, bool)) func(r *Report) ([]float64, []float64) {
		return func(r *Report) (xs, ys []float64) {
			for _, s := range r.Seconds {
				if y, ok := v(s); ok {
					xs, ys = append(xs, float64(s.T)), append(ys, y)
				}
			}
			return xs, ys
		}
	}
	panels := []bench.LinePanel{
		panel("latency p99 (ms) by arrival second", perSecond(func(s Second) (float64, bool) { return s.P99Ms, s.OK > 0 })),
		panel("successful requests by arrival second", perSecond(func(s Second) (float64, bool) { return float64(s.OK), true })),
		panel("host memory used (MiB)", func(r *Report) (xs, ys []float64) {
			for _, s := range r.Samples {
				xs, ys = append(xs, s.T), append(ys, s.MemUsedMiB)
			}
			return xs, ys
		}),
	}
	metric := func(name string, scale float64) func(r *Report) ([]float64, []float64) {
		return func(r *Report) (xs, ys []float64) {
			for _, s := range r.Samples {
				if v, ok := s.Metrics[name]; ok {
					xs, ys = append(xs, s.T), append(ys, v*scale)
				}
			}
			return xs, ys
		}
	}
	// The service measures its functions' memory only under a budget.
	panels = append(panels,
		panel("service: instances, warm and busy", metric("snapbpf_instances", 1)),
		panel("service: functions' memory (MiB)", metric("snapbpf_memory_used_bytes", 1.0/(1<<20))))
	// A panel without a line cannot be drawn.
	drawn := panels[:0]
	for _, p := range panels {
		if len(p.Series) > 0 {
			drawn = append(drawn, p)
		}
	}
	if len(drawn) == 0 {
		return nil, nil
	}
	return bench.PlotLines(dir, bench.LineFigure{Name: name, Title: "snapbpf load", XLabel: "time (s)", Panels: drawn, EvenXTicks: true})
}
