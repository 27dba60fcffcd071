package functions

import "math"

// Numeric kernels for the model functions.
//
// Results must be bit-identical on the host and in the TCG guest, so:
//   - reductions have a fixed order (no goroutines, fixed accumulator split);
//   - products are wrapped in explicit float32(...) conversions, which the Go
//     spec says prevent fusing into FMA even when built with GOAMD64=v3;
//   - no math.Exp/Tanh/Log: on amd64 math.Exp takes an FMA code path chosen
//     at run time from CPUID, so host and guest CPUs could round differently.
//     exp below uses only +, *, Floor and exact bit construction.

// dot returns sum(a[i]*b[i]) with eight fixed accumulators.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa := a[i : i+8 : i+8]
		bb := b[i : i+8 : i+8]
		s0 += float32(aa[0] * bb[0])
		s1 += float32(aa[1] * bb[1])
		s2 += float32(aa[2] * bb[2])
		s3 += float32(aa[3] * bb[3])
		s4 += float32(aa[4] * bb[4])
		s5 += float32(aa[5] * bb[5])
		s6 += float32(aa[6] * bb[6])
		s7 += float32(aa[7] * bb[7])
	}
	for ; i < len(a); i++ {
		s0 += float32(a[i] * b[i])
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// axpy computes y += a*x.
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += float32(a * v)
	}
}

// linear computes y[t] = W x[t] + b for tokens vectors at once. W is
// out x in, row-major; x is tokens x in, y is tokens x out; b may be nil.
// Rows of W are the outer loop so each weight row is read from memory once
// per call and reused from cache for every token.
func linear(y, x, w, b []float32, in, out, tokens int) {
	for r := 0; r < out; r++ {
		row := w[r*in : (r+1)*in]
		var bias float32
		if b != nil {
			bias = b[r]
		}
		for t := 0; t < tokens; t++ {
			y[t*out+r] = dot(row, x[t*in:(t+1)*in]) + bias
		}
	}
}

const (
	log2e = 1.44269504088896338700e+00
	ln2Hi = 6.93147180369123816490e-01
	ln2Lo = 1.90821492927058770002e-10
)

// exp is a portable e**x: range reduction by ln 2, a degree-11 Taylor
// polynomial on |r| <= ln2/2 (relative error ~1e-15), and scaling by 2**k
// built from bits.
func exp(x float64) float64 {
	switch {
	case x != x:
		return x
	case x > 700:
		x = 700
	case x < -700:
		return 0
	}
	k := math.Floor(x*log2e + 0.5)
	r := (x - float64(k*ln2Hi)) - float64(k*ln2Lo)
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+
		r*(1.0/5040+r*(1.0/40320+r*(1.0/362880+r*(1.0/3628800+r*(1.0/39916800)))))))))))
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

func sigmoid(x float32) float32 {
	return float32(1 / (1 + exp(-float64(x))))
}

func tanh(x float32) float32 {
	return float32(1 - 2/(exp(2*float64(x))+1))
}

// gelu is the tanh approximation used by BERT implementations.
func gelu(x float32) float32 {
	v := float64(x)
	t := 1 - 2/(exp(2*0.7978845608028654*(v+0.044715*v*v*v))+1)
	return float32(0.5 * v * (1 + t))
}

// softmax normalises x in place.
func softmax(x []float32) {
	m := x[0]
	for _, v := range x {
		m = max(m, v)
	}
	var s float64
	for i, v := range x {
		e := exp(float64(v - m))
		x[i] = float32(e)
		s += e
	}
	inv := 1 / s
	for i := range x {
		x[i] = float32(float64(x[i]) * inv)
	}
}

// layerNorm normalises x in place to zero mean and unit variance, then
// applies the elementwise gain g and bias b.
func layerNorm(x, g, b []float32) {
	var mean float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	var vari float64
	for _, v := range x {
		d := float64(v) - mean
		vari += d * d
	}
	inv := 1 / math.Sqrt(vari/float64(len(x))+1e-5)
	for i, v := range x {
		x[i] = float32((float64(v)-mean)*inv)*g[i] + b[i]
	}
}
