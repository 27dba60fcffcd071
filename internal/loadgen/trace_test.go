package loadgen

import (
	"math"
	"slices"
	"testing"
	"time"
)

// TestPoissonArrivals: inter-arrival times have mean 1/rate and the
// exponential's spread (standard deviation equal to the mean), and the
// count in the duration is rate×duration within a few sigma.
func TestPoissonArrivals(t *testing.T) {
	c := TraceConfig{Rate: 50, Duration: 200 * time.Second, Functions: []string{"a"}, Seed: 7}
	tr, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	want := c.Rate * c.Duration.Seconds() // 10000
	if n := float64(len(tr)); math.Abs(n-want) > 4*math.Sqrt(want) {
		t.Errorf("%v arrivals in %s at %g/s, want about %v", n, c.Duration, c.Rate, want)
	}
	var gaps []float64
	prev := time.Duration(0)
	for _, a := range tr {
		if a.At < prev || a.At >= c.Duration {
			t.Fatalf("arrival at %s after %s (duration %s)", a.At, prev, c.Duration)
		}
		gaps = append(gaps, (a.At - prev).Seconds())
		prev = a.At
	}
	mean, sd := meanSD(gaps)
	if math.Abs(mean-1/c.Rate)/(1/c.Rate) > 0.05 {
		t.Errorf("mean inter-arrival %.5f s, want %.5f", mean, 1/c.Rate)
	}
	if math.Abs(sd-mean)/mean > 0.08 {
		t.Errorf("inter-arrival sd %.5f s, mean %.5f: not exponential", sd, mean)
	}
	// Exponential: P(gap > mean) = 1/e.
	over := 0
	for _, g := range gaps {
		if g > mean {
			over++
		}
	}
	if f := float64(over) / float64(len(gaps)); math.Abs(f-1/math.E) > 0.03 {
		t.Errorf("share of gaps above the mean %.3f, want %.3f", f, 1/math.E)
	}
}

func meanSD(v []float64) (float64, float64) {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	m := sum / float64(len(v))
	ss := 0.0
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(v)-1))
}

// TestZipfSkew: each function's share of the arrivals matches 1/k^s
// normalised, for several exponents; 0 is uniform.
func TestZipfSkew(t *testing.T) {
	fns := []string{"a", "b", "c", "d"}
	for _, s := range []float64{0, 1, 2} {
		w := ZipfWeights(len(fns), s)
		if s == 1 && math.Abs(w[0]-1/(1+0.5+1.0/3+0.25)) > 1e-12 {
			t.Errorf("s=1: weight of the first %g", w[0])
		}
		tr, err := Generate(TraceConfig{Rate: 100, Duration: 300 * time.Second, Functions: fns, Skew: s, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, a := range tr {
			count[a.Function]++
		}
		for k, f := range fns {
			got := float64(count[f]) / float64(len(tr))
			sigma := math.Sqrt(w[k] * (1 - w[k]) / float64(len(tr)))
			if math.Abs(got-w[k]) > 5*sigma+1e-9 {
				t.Errorf("s=%g: %s got %.4f of arrivals, want %.4f", s, f, got, w[k])
			}
		}
	}
}

// TestTraceReproducible: the same seed gives the same trace (what the
// side-by-side mode replays), another seed another; inputs stay in range.
func TestTraceReproducible(t *testing.T) {
	c := TraceConfig{Rate: 20, Duration: 10 * time.Second, Functions: []string{"a", "b"}, Skew: 1.1, Inputs: 3, Seed: 42}
	a, _ := Generate(c)
	b, _ := Generate(c)
	if !slices.Equal(a, b) || len(a) == 0 {
		t.Fatalf("same seed, different traces (%d, %d arrivals)", len(a), len(b))
	}
	c.Seed = 43
	d, _ := Generate(c)
	if slices.Equal(a, d) {
		t.Error("another seed gave the same trace")
	}
	for _, x := range a {
		if x.Input != "1" && x.Input != "2" && x.Input != "3" {
			t.Errorf("input %q outside 1..3", x.Input)
		}
	}
}

func TestTraceConfigErrors(t *testing.T) {
	ok := TraceConfig{Rate: 1, Duration: time.Second, Functions: []string{"a"}}
	for _, c := range []TraceConfig{
		{Rate: 0, Duration: time.Second, Functions: []string{"a"}},
		{Rate: math.Inf(1), Duration: time.Second, Functions: []string{"a"}},
		{Rate: 1, Duration: 0, Functions: []string{"a"}},
		{Rate: 1, Duration: time.Second},
		{Rate: 1, Duration: time.Second, Functions: []string{"a"}, Skew: -1},
	} {
		if _, err := Generate(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := Generate(ok); err != nil {
		t.Error(err)
	}
}

// TestSummarize: the distribution of a load run's latencies (the
// percentiles themselves are internal/stats's, tested there).
func TestSummarize(t *testing.T) {
	// 1..1000: p99 is 990.01 by interpolation.
	var big []float64
	for i := 1000; i >= 1; i-- {
		big = append(big, float64(i))
	}
	d := Summarize(big)
	if d.N != 1000 || d.P50 != 500.5 || math.Abs(d.P99-990.01) > 1e-9 || d.Max != 1000 || d.Mean != 500.5 {
		t.Errorf("summary %+v", d)
	}
	if big[0] != 1000 {
		t.Error("Summarize sorted its argument")
	}
}
