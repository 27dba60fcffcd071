// Package stats is the project's one owner of order statistics over
// measurements: the percentiles of a load run (internal/loadgen) and the
// medians of benchmark runs (internal/bench, snapbpf demo).
package stats

import (
	"math"
	"slices"
)

// Sorted returns a sorted copy of v, leaving v as the caller had it (the
// callers keep their samples in arrival order).
func Sorted(v []float64) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}

// Percentile returns the p-th percentile (0-100) of v by linear
// interpolation between the closest ranks; NaN without values.
func Percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return PercentileSorted(Sorted(v), p)
}

// PercentileSorted is Percentile of s, already sorted and not empty: a
// caller taking several percentiles sorts once.
func PercentileSorted(s []float64, p float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	r := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(r))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (r-float64(lo))*(s[lo+1]-s[lo])
}

// Median returns the median of v: the middle value, or the mean of the two
// middle ones for an even count; NaN without values.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return MedianSorted(Sorted(v))
}

// MedianSorted is Median of s, already sorted and not empty. It averages
// the two middle values as (a+b)/2, not through PercentileSorted's
// interpolation, whose rounding can differ in the last bit.
func MedianSorted(s []float64) float64 {
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return m
}
