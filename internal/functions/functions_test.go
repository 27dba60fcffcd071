package functions

import (
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testOpts keeps every function small enough for the package tests to run
// in seconds; alloc keeps its default, since its size is the point.
var testOpts = map[string]Options{
	"aes":     {DataMiB: 4},
	"alloc":   {},
	"bert":    {DataMiB: 16},
	"gzip":    {DataMiB: 4},
	"image":   {DataMiB: 4},
	"json":    {DataMiB: 4},
	"linpack": {DataMiB: 1},
	"rnn":     {DataMiB: 4},
}

func newInited(t testing.TB, name string, opts Options) Function {
	t.Helper()
	f, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Init(opts); err != nil {
		t.Fatal(err)
	}
	return f
}

func invoke(t testing.TB, f Function, input uint64) Result {
	t.Helper()
	res, err := f.Invoke(input)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestNames(t *testing.T) {
	want := []string{"aes", "alloc", "bert", "gzip", "image", "json", "linpack", "rnn"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	for _, n := range want {
		if _, ok := testOpts[n]; !ok {
			t.Errorf("no test options for %s", n)
		}
	}
}

func TestNewUnknown(t *testing.T) {
	_, err := New("nope")
	if err == nil {
		t.Fatal("New(nope) succeeded")
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %s", err, n)
		}
	}
}

func TestMisuse(t *testing.T) {
	tests := []struct {
		name string
		run  func(f Function) error
	}{
		{"invoke before init", func(f Function) error { _, err := f.Invoke(1); return err }},
		{"negative size", func(f Function) error { return f.Init(Options{DataMiB: -1}) }},
		{"init twice", func(f Function) error {
			if err := f.Init(Options{DataMiB: 1}); err != nil {
				return nil // reported as a failure below: want an error from the second Init
			}
			return f.Init(Options{DataMiB: 1})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New("linpack")
			if err != nil {
				t.Fatal(err)
			}
			if tc.run(f) == nil {
				t.Error("no error")
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			opts := testOpts[name]
			a, b := newInited(t, name, opts), newInited(t, name, opts)
			r1, r2 := invoke(t, a, 1), invoke(t, a, 2)
			if r1.Checksum == r2.Checksum {
				t.Errorf("inputs 1 and 2 give the same checksum %s", r1.Checksum)
			}
			// Another instance, and a repeated input after another invoke,
			// must reproduce the result.
			if again := invoke(t, b, 1); again.Checksum != r1.Checksum {
				t.Errorf("fresh instance: checksum %s, want %s", again.Checksum, r1.Checksum)
			}
			if again := invoke(t, a, 1); again.Checksum != r1.Checksum {
				t.Errorf("repeat: checksum %s, want %s", again.Checksum, r1.Checksum)
			}
			for _, r := range []Result{r1, r2} {
				if len(r.Checksum) != 64 || r.OutputBytes <= 0 || r.TouchedBytes <= 0 || r.AllocatedBytes <= 0 {
					t.Errorf("implausible result %+v", r)
				}
			}
		})
	}
}

func TestLinpackResidual(t *testing.T) {
	f := newInited(t, "linpack", testOpts["linpack"])
	for input := uint64(0); input < 3; input++ {
		invoke(t, f, input)
		res := f.(*function).impl.(*linpackFunc).residual
		if res > 10 {
			t.Errorf("input %d: normalised residual %g, want < 10", input, res)
		}
	}
}

func TestLUSolveKnown(t *testing.T) {
	// Needs a row swap: the first pivot is zero.
	a := []float64{
		0, 2, 1,
		1, 1, 1,
		2, 1, 3,
	}
	b := []float64{7, 6, 13} // x = (1, 2, 3)
	if err := luSolve(a, b, 3); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{1, 2, 3} {
		if d := b[i] - want; d > 1e-12 || d < -1e-12 {
			t.Errorf("x[%d] = %g, want %g", i, b[i], want)
		}
	}
	if err := luSolve([]float64{1, 2, 2, 4}, []float64{1, 1}, 2); err == nil {
		t.Error("singular matrix solved")
	}
}

func TestAllocAllocates(t *testing.T) {
	f := newInited(t, "alloc", Options{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := invoke(t, f, 7)
	runtime.ReadMemStats(&after)
	const want = 64 * MiB
	if got := after.TotalAlloc - before.TotalAlloc; got < want {
		t.Errorf("MemStats.TotalAlloc grew by %d, want >= %d", got, want)
	}
	if res.AllocatedBytes < want {
		t.Errorf("AllocatedBytes = %d, want >= %d", res.AllocatedBytes, want)
	}
}

func TestBertRoutesToSeveralExperts(t *testing.T) {
	// If the router sent every token to one expert, the expert weights an
	// invoke reads would not depend on the input.
	f := newInited(t, "bert", testOpts["bert"])
	b := f.(*function).impl.(*bertFunc)
	small := invoke(t, f, 3).TouchedBytes
	attnOnly := int64(4 * b.layers * (4*b.dim*b.dim + 2*bertExperts*b.dim))
	expert := int64(4 * 2 * b.dim * b.ffn)
	if used := (small - attnOnly) / expert; used < int64(2*b.layers) {
		t.Errorf("about %d experts used over %d layers, want several per layer", used, b.layers)
	}
}

func TestGuestMiB(t *testing.T) {
	for _, s := range Specs() {
		got := MinGuestMiB(s.Name, Options{})
		if got < GuestOverheadMiB+s.DefaultDataMiB {
			t.Errorf("%s: MinGuestMiB = %d, below data %d + overhead", s.Name, got, s.DefaultDataMiB)
		}
		if bigger := MinGuestMiB(s.Name, Options{DataMiB: 4 * s.DefaultDataMiB}); bigger <= got {
			t.Errorf("%s: 4x data needs %d MiB, not more than %d", s.Name, bigger, got)
		}
	}
	if got := MinGuestMiB("nope", Options{}); got != 0 {
		t.Errorf("MinGuestMiB(nope) = %d, want 0", got)
	}
}

func BenchmarkInvoke(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			f := newInited(b, name, Options{})
			var input uint64
			for b.Loop() {
				invoke(b, f, input)
				input++
			}
		})
	}
}

func BenchmarkInit(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				newInited(b, name, Options{})
			}
		})
	}
}

func TestTinySizes(t *testing.T) {
	// The smallest size must either work or fail Init with an error, never
	// panic in Invoke.
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			f, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Init(Options{DataMiB: 1}); err != nil {
				t.Logf("Init refused 1 MiB: %v", err)
				return
			}
			invoke(t, f, 42)
		})
	}
}

func TestCheckInput(t *testing.T) {
	for _, in := range []uint64{MinInput, 2, 1 << 40, MaxInput} {
		if err := CheckInput(in); err != nil {
			t.Errorf("CheckInput(%d): %v", in, err)
		}
	}
	for _, in := range []uint64{0, MaxInput + 1, 1<<64 - 1} {
		if err := CheckInput(in); err == nil {
			t.Errorf("CheckInput(%d) accepted", in)
		}
	}
}
