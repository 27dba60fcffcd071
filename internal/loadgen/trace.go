// Package loadgen drives snapbpf serve with open-loop load: a trace of
// Poisson arrivals over several functions with a Zipf popularity skew,
// each arrival sent as its own request whatever the earlier ones are
// doing, and reports throughput, latency percentiles, cold starts,
// queueing, rejections and host memory over time.
package loadgen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// TraceConfig describes an arrival trace.
type TraceConfig struct {
	// Rate is the mean arrivals per second (Poisson).
	Rate float64
	// Duration is how long arrivals go on.
	Duration time.Duration
	// Functions are the function names, most popular first.
	Functions []string
	// Skew is the Zipf exponent s of the popularity: function k (from 1)
	// gets a share proportional to 1/k^s; 0 is uniform.
	Skew float64
	// Inputs: each arrival's input seed is uniform in 1..Inputs (1 when 0).
	Inputs int
	// Seed makes the trace reproducible.
	Seed uint64
}

// Validate checks the configuration.
func (c TraceConfig) Validate() error {
	switch {
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("rate %g: want arrivals per second above 0", c.Rate)
	case c.Duration <= 0:
		return fmt.Errorf("duration %s: want more than 0", c.Duration)
	case len(c.Functions) == 0:
		return errors.New("no functions: name at least one registered function")
	case c.Skew < 0 || math.IsNaN(c.Skew):
		return fmt.Errorf("skew %g: want a Zipf exponent of 0 (uniform) or more", c.Skew)
	case c.Inputs < 0:
		return fmt.Errorf("inputs %d: want 0 or more", c.Inputs)
	}
	return nil
}

// Arrival is one request of a trace.
type Arrival struct {
	// At is the time since the start at which it is sent.
	At       time.Duration `json:"at_ns"`
	Function string        `json:"function"`
	Input    string        `json:"input"`
}

// Generate returns the trace: exponential inter-arrival times of mean
// 1/Rate, each arrival's function drawn from the Zipf weights. The same
// configuration gives the same trace.
func Generate(c TraceConfig) ([]Arrival, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x5eed))
	cum := cumulative(ZipfWeights(len(c.Functions), c.Skew))
	inputs := max(c.Inputs, 1)
	var trace []Arrival
	t := 0.0
	for {
		t += rng.ExpFloat64() / c.Rate
		at := time.Duration(t * float64(time.Second))
		if at >= c.Duration {
			return trace, nil
		}
		trace = append(trace, Arrival{
			At:       at,
			Function: c.Functions[pick(cum, rng.Float64())],
			Input:    strconv.Itoa(1 + rng.IntN(inputs)),
		})
	}
}

// ZipfWeights returns the popularity shares of n functions under Zipf
// exponent s: weight k (from 1) ∝ 1/k^s, summing to 1.
func ZipfWeights(n int, s float64) []float64 {
	w := make([]float64, n)
	sum := 0.0
	for k := range w {
		w[k] = math.Pow(float64(k+1), -s)
		sum += w[k]
	}
	for k := range w {
		w[k] /= sum
	}
	return w
}

func cumulative(w []float64) []float64 {
	c := make([]float64, len(w))
	sum := 0.0
	for i, x := range w {
		sum += x
		c[i] = sum
	}
	return c
}

// pick returns the index whose cumulative share first exceeds u in [0,1).
func pick(cum []float64, u float64) int {
	for i, c := range cum {
		if u < c {
			return i
		}
	}
	return len(cum) - 1
}
