package bench

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name          string
		in            []float64
		med, min, max float64
		n             int
	}{
		{"odd", []float64{3, 1, 2}, 2, 1, 3, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5, 1, 4, 4},
		{"one", []float64{7}, 7, 7, 7, 1},
		{"outlier", []float64{10, 11, 12, 100, 9}, 11, 9, 100, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			s := Summarize(tc.in)
			if s.Median != tc.med || s.Min != tc.min || s.Max != tc.max || s.N != tc.n {
				t.Errorf("Summarize(%v) = %+v, want median %g min %g max %g n %d", tc.in, s, tc.med, tc.min, tc.max, tc.n)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("Summarize reordered its input: %v", tc.in)
				}
			}
		})
	}
	if s := Summarize(nil); s.Valid() || !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v, want invalid", s)
	}
}

func TestSummaryFormat(t *testing.T) {
	tests := []struct {
		s    Summary
		want string
	}{
		{Summarize([]float64{1458.4, 1400, 1600}), "1458 (1400–1600)"},
		{Summarize([]float64{12}), "12"},
		{Summarize(nil), "–"},
		{Summarize([]float64{1, 2, 3}).Scale(0.5), "1 (0–2)"},
		{Summarize([]float64{1.001, 1.002}), "1"},
	}
	for _, tc := range tests {
		if got := tc.s.Format("%.0f"); got != tc.want {
			t.Errorf("Format(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
