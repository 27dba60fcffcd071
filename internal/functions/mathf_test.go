package functions

import (
	"math"
	"testing"
)

func TestExpMatchesMath(t *testing.T) {
	for x := -50.0; x <= 50; x += 0.37 {
		got, want := exp(x), math.Exp(x)
		if rel := math.Abs(got-want) / want; rel > 1e-14 {
			t.Errorf("exp(%g) = %g, want %g (rel err %g)", x, got, want, rel)
		}
	}
	if got := exp(-800); got != 0 {
		t.Errorf("exp(-800) = %g, want 0", got)
	}
}

func TestActivations(t *testing.T) {
	tests := []struct {
		name string
		f    func(float32) float32
		ref  func(float64) float64
	}{
		{"sigmoid", sigmoid, func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }},
		{"tanh", tanh, math.Tanh},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for x := float32(-8); x <= 8; x += 0.25 {
				if got, want := float64(tc.f(x)), tc.ref(float64(x)); math.Abs(got-want) > 1e-6 {
					t.Errorf("%s(%g) = %g, want %g", tc.name, x, got, want)
				}
			}
		})
	}
}

func TestSoftmaxSumsToOne(t *testing.T) {
	x := []float32{1, 2, 3, -4, 10}
	softmax(x)
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	if math.Abs(s-1) > 1e-6 {
		t.Errorf("softmax sums to %g", s)
	}
}
