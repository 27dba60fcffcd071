package stats

import (
	"math"
	"testing"
)

func TestPercentile(t *testing.T) {
	v := []float64{15, 20, 35, 40, 50}
	for _, tc := range []struct{ p, want float64 }{{0, 15}, {50, 35}, {100, 50}, {25, 20}, {90, 46}, {99, 49.6}} {
		if got := Percentile(v, tc.p); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("p%g = %g, want %g", tc.p, got, tc.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) || Percentile([]float64{7}, 99) != 7 {
		t.Error("empty or single")
	}
	desc := []float64{3, 2, 1}
	if Percentile(desc, 50) != 2 || desc[0] != 3 {
		t.Errorf("Percentile sorted its argument: %v", desc)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
		{[]float64{10, 11, 12, 100, 9}, 11},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %g, want %g", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median reordered its input: %v", tc.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}
