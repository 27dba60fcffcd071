package bench

import (
	"testing"
	"time"
)

func TestEstimate(t *testing.T) {
	reduced := Reduced()
	res := fakeResults(reduced) // WallMs is 1500 ms * N for every cell
	est := Estimate(res, reduced)
	// The reduced set predicts itself from its own medians.
	var want float64
	for _, k := range Plan(reduced) {
		want += 1500 * float64(k.N)
	}
	// A report snapshot each, and a nofree one each at json's 9 s (the
	// only one the fake has).
	want += float64(len(reduced.Functions)) * (14000 + 9000)
	if got := est.Total; got != time.Duration(want)*time.Millisecond {
		t.Errorf("reduced estimate %v, want %v", got, time.Duration(want)*time.Millisecond)
	}
	if est.Cells != len(Plan(reduced)) {
		t.Errorf("estimate counts %d cells, want %d", est.Cells, len(Plan(reduced)))
	}
	// The full set adds N=8, scaled from N=4, and functions never
	// measured at the mean of the measured ones.
	full := Full()
	fe := Estimate(res, full)
	if fe.Total <= est.Total {
		t.Errorf("full estimate %v not above the reduced %v", fe.Total, est.Total)
	}
	if got := cellEstimate(res, Key{ExpLatency, "json", "lazy", 8, 1, 0}); got != 1500*8 {
		t.Errorf("N=8 cell estimated at %g ms, want %d", got, 1500*8)
	}
	if got := cellEstimate(res, Key{ExpLatency, "rnn", "nora", 2, 1, 0}); got != 3000 {
		t.Errorf("unmeasured function estimated at %g ms, want 3000", got)
	}
	if e := Estimate(&Results{}, full); e.Total != 0 || e.Basis != "no runs to predict from" {
		t.Errorf("estimate without runs = %+v", e)
	}
}
