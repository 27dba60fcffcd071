package bench

import (
	"fmt"
	"math"

	"github.com/snapbpf/snapbpf/internal/stats"
)

// Summary is the median of a set of runs and their spread.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the median, minimum and maximum of v. With few runs
// (3 to 5 here) quartiles say nothing more than the extremes, so the
// spread is the full range.
func Summarize(v []float64) Summary {
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := stats.Sorted(v)
	return Summary{N: len(s), Median: stats.MedianSorted(s), Min: s[0], Max: s[len(s)-1]}
}

// Valid reports whether the summary has any runs.
func (s Summary) Valid() bool { return s.N > 0 }

// Scale multiplies every value by f (units, normalisation).
func (s Summary) Scale(f float64) Summary {
	s.Median, s.Min, s.Max = s.Median*f, s.Min*f, s.Max*f
	return s
}

// Format renders "median (min–max)" with the given verb for each number,
// only the median when the range does not show at that precision, or "–"
// without runs.
func (s Summary) Format(verb string) string {
	if !s.Valid() {
		return "–"
	}
	med, lo, hi := fmt.Sprintf(verb, s.Median), fmt.Sprintf(verb, s.Min), fmt.Sprintf(verb, s.Max)
	if lo == hi {
		return med
	}
	return med + " (" + lo + "–" + hi + ")"
}

// metric summarizes one metric over runs.
func metric(runs []Run, name string) Summary {
	var v []float64
	for _, r := range runs {
		if x, ok := r.Metrics[name]; ok {
			v = append(v, x)
		}
	}
	return Summarize(v)
}
