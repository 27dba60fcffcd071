package functions

import (
	"errors"
	"fmt"
	"math"
)

func init() {
	register(Spec{
		Name:           "linpack",
		Summary:        "LU-solve (partial pivoting) a 512x512 float64 system whose rows are input-selected from a pool (FunctionBench linpack)",
		DefaultDataMiB: 8,
		memory:         func(d int) (int, int) { return d, 5 },
		newImpl:        func() impl { return &linpackFunc{n: linpackN} },
	})
}

const linpackN = 512

// linpackFunc solves A x = b. The rows of A are copied from input-selected
// offsets of a pool of random numbers built at init, so the invoke reads
// init data (as a real function reads its inputs) instead of only
// computing.
type linpackFunc struct {
	n        int
	pool     []float64
	residual float64 // normalised residual of the last solve, for tests
}

func (f *linpackFunc) init(dataMiB int) error {
	f.pool = make([]float64, dataMiB*MiB/8)
	if len(f.pool) < 2*f.n {
		return fmt.Errorf("pool of %d values too small for n=%d", len(f.pool), f.n)
	}
	newRNG(seedFor("linpack/init", 0)).fillUniform64(f.pool)
	return nil
}

func (f *linpackFunc) invoke(input uint64) (Result, error) {
	n := f.n
	r := newRNG(seedFor("linpack", input))
	a := make([]float64, n*n)
	// Two rows from one offset would make A singular; redraw repeats.
	used := make(map[int]bool, n)
	for i := 0; i < n; i++ {
		off := r.intn(len(f.pool) - n + 1)
		for used[off] {
			off = r.intn(len(f.pool) - n + 1)
		}
		used[off] = true
		copy(a[i*n:(i+1)*n], f.pool[off:off+n])
	}
	orig := make([]float64, n*n)
	copy(orig, a)
	// b = A*1 as in the LINPACK benchmark, so the exact solution is known.
	b := make([]float64, n)
	for i := range b {
		var s float64
		for _, v := range a[i*n : (i+1)*n] {
			s += v
		}
		b[i] = s
	}
	x := make([]float64, n)
	copy(x, b)
	if err := luSolve(a, x, n); err != nil {
		return Result{}, err
	}
	f.residual = normalisedResidual(orig, x, b, n)
	// LINPACK calls a residual of order 1 to 10 normal; far larger means
	// the arithmetic is broken, which is worth failing the invoke for.
	if !(f.residual < 100) {
		return Result{}, fmt.Errorf("residual %g too large", f.residual)
	}
	d := newDigest()
	d.writeFloat64s(x)
	return Result{
		Checksum:     d.sum(),
		OutputBytes:  int64(8 * n),
		TouchedBytes: int64(8 * n * n),
	}, nil
}

// luSolve overwrites a (n x n, row-major) with its LU factors, using
// partial pivoting, and b with the solution of the original A x = b.
func luSolve(a, b []float64, n int) error {
	for k := 0; k < n; k++ {
		p := k
		for i := k + 1; i < n; i++ {
			if math.Abs(a[i*n+k]) > math.Abs(a[p*n+k]) {
				p = i
			}
		}
		if a[p*n+k] == 0 {
			return errors.New("matrix is singular")
		}
		if p != k {
			rk, rp := a[k*n:(k+1)*n], a[p*n:(p+1)*n]
			for j := range rk {
				rk[j], rp[j] = rp[j], rk[j]
			}
			b[k], b[p] = b[p], b[k]
		}
		pivot := a[k*n+k]
		rowK := a[k*n+k+1 : (k+1)*n]
		for i := k + 1; i < n; i++ {
			l := a[i*n+k] / pivot
			a[i*n+k] = l
			rowI := a[i*n+k+1 : (i+1)*n]
			rowI = rowI[:len(rowK)]
			for j, v := range rowK {
				rowI[j] -= float64(l * v)
			}
			b[i] -= float64(l * b[k])
		}
	}
	for i := n - 1; i >= 0; i-- {
		s := b[i]
		for j := i + 1; j < n; j++ {
			s -= float64(a[i*n+j] * b[j])
		}
		b[i] = s / a[i*n+i]
	}
	return nil
}

// normalisedResidual is LINPACK's ||A x - b||_inf / (n ||A||_inf ||x||_inf eps).
func normalisedResidual(a, x, b []float64, n int) float64 {
	var rmax, anorm, xmax float64
	for i := 0; i < n; i++ {
		var s, rowSum float64
		for j := 0; j < n; j++ {
			s += float64(a[i*n+j] * x[j])
			rowSum += math.Abs(a[i*n+j])
		}
		rmax = max(rmax, math.Abs(s-b[i]))
		anorm = max(anorm, rowSum)
		xmax = max(xmax, math.Abs(x[i]))
	}
	const eps = 0x1p-52
	return rmax / (float64(n) * anorm * xmax * eps)
}
