// Package pyfn knows the functions of the Python runtime images (package
// rootfs ships their code): their names and runtimes, the inputs that
// arrive with a request in each of their input shapes, and their results
// computed on the host by the same runner over the same image.
package pyfn

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
)

// The Python runtimes (rootfs.Runtimes builds their images). Every
// function of Runtime also runs in RuntimeTorch, whose image has the same
// packages and torch.
const (
	Runtime      = "python"
	RuntimeTorch = "python-torch"
)

// Runtimes lists the Python runtimes.
func Runtimes() []string { return []string{Runtime, RuntimeTorch} }

// IsRuntime reports whether rt is a Python runtime.
func IsRuntime(rt string) bool { return slices.Contains(Runtimes(), rt) }

// Shapes is how many input shapes each function has: shape 1 is the one a
// snapshot warms up with, 2 differs in size or content.
const Shapes = 2

// function is one Python function and its inputs.
type function struct {
	// input makes the payload of shape 1 or 2.
	input func(shape int) ([]byte, error)
	// runtime is the least runtime the function runs in; empty means
	// Runtime.
	runtime string
	// guestMiB is its guest RAM; 0 means 256 MiB.
	guestMiB int
}

var fns = map[string]function{
	// The runtime alone: a few bytes in, a few out.
	"hello": {input: func(s int) ([]byte, error) { return []byte([]string{"world", "snapbpf, restored"}[s-1]), nil }},
	// FaaSnap's pyaes inputs: a 20000 and a 22000 byte message.
	"pyaes": {input: func(s int) ([]byte, error) { return randomBytes(uint64(s), 18000+2000*s), nil }},
	"json":  {input: jsonDoc},
	"gzip":  {input: text},
	"image": {input: pngImage},
	// One invoke takes 0.3-0.7 s in a TCG guest (matmul 300: 0.26 s).
	"matmul":  {input: func(s int) ([]byte, error) { return sizeSeed(200+100*s, s) }},
	"linpack": {input: func(s int) ([]byte, error) { return sizeSeed(300+100*s, s) }},
	// FunctionBench chameleon: a 250x30 (shape 1) and a 400x30 HTML
	// table.
	"chameleon": {input: func(s int) ([]byte, error) {
		return json.Marshal(map[string]int{"rows": 100 + 150*s, "cols": 30, "seed": s})
	}},
	// A character-level LSTM (torch) reads a text of 50 (shape 1) or
	// 100 characters and generates 20 or 40 more. Importing torch
	// fills about 300 MiB of guest RAM with the interpreter's heap and
	// the page cache of libtorch.
	"rnn": {input: rnnText, runtime: RuntimeTorch, guestMiB: 1024},
}

// Names lists the functions of every Python runtime, sorted.
func Names() []string {
	var out []string
	for n := range fns {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// NamesOf lists the functions whose least runtime is rt, sorted.
func NamesOf(rt string) []string {
	var out []string
	for _, n := range Names() {
		if RuntimeOf(n) == rt {
			out = append(out, n)
		}
	}
	return out
}

// Has reports whether name is a Python function.
func Has(name string) bool { _, ok := fns[name]; return ok }

// RuntimeOf is the runtime function name needs (its snapshot's
// --runtime); empty for a name that is not a Python function.
func RuntimeOf(name string) string {
	f, ok := fns[name]
	switch {
	case !ok:
		return ""
	case f.runtime == "":
		return Runtime
	}
	return f.runtime
}

// RunsIn reports whether function name runs in runtime rt's image: its
// own runtime's, or the torch image, which holds every package.
func RunsIn(name, rt string) bool {
	own := RuntimeOf(name)
	return own != "" && (own == rt || rt == RuntimeTorch)
}

// GuestMiB is the guest RAM a snapshot of function name gets by default:
// the interpreter, numpy and PIL with their page cache take about 100 MiB
// after a run; torch about 300 MiB more.
func GuestMiB(name string) int {
	if m := fns[name].guestMiB; m > 0 {
		return m
	}
	return 256
}

// Input returns the payload of function name in input shape (1 to
// Shapes; 0 means 1).
func Input(name string, shape uint64) ([]byte, error) {
	f, ok := fns[name]
	if !ok {
		return nil, fmt.Errorf("no python function %q (have: %s)", name, strings.Join(Names(), ", "))
	}
	if shape == 0 {
		shape = 1
	}
	if shape > Shapes {
		return nil, fmt.Errorf("python function %s: input shape %d, want 1 to %d", name, shape, Shapes)
	}
	return f.input(int(shape))
}

func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x736e6170627066)) }

func randomBytes(seed uint64, n int) []byte {
	r := rng(seed)
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

func sizeSeed(n, seed int) ([]byte, error) {
	return json.Marshal(map[string]int{"n": n, "seed": seed})
}

// jsonDoc is a document of records, about 160 KiB (shape 1) and 240 KiB.
func jsonDoc(s int) ([]byte, error) {
	r := rng(uint64(s))
	type rec struct {
		ID    int      `json:"id"`
		Name  string   `json:"name"`
		Score float64  `json:"score"`
		Tags  []string `json:"tags"`
		OK    bool     `json:"ok"`
	}
	tags := []string{"alpha", "beta", "gamma", "delta", "eps"}
	recs := make([]rec, 1000+500*s)
	for i := range recs {
		recs[i] = rec{ID: i, Name: fmt.Sprintf("user-%06d", r.IntN(1e6)), Score: math.Round(r.Float64()*1e4) / 100,
			Tags: tags[:1+r.IntN(len(tags))], OK: r.IntN(2) == 0}
	}
	return json.Marshal(map[string]any{"records": recs, "shape": s})
}

// text is compressible pseudo-text: 256 KiB (shape 1) and 512 KiB.
func text(s int) ([]byte, error) {
	r := rng(uint64(s))
	words := strings.Fields("snapshot restore memory page cache prefetch working set guest kernel function runtime python numpy image file disk fault")
	var b bytes.Buffer
	for b.Len() < s*256<<10 {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteString(fmt.Sprintf(" %d.\n", r.IntN(100000)))
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:s*256<<10], nil
}

// pngImage is an RGB picture (gradients, rings and some noise): 480x360
// (shape 1) and 640x480.
func pngImage(s int) ([]byte, error) {
	w, h := 320+160*s, 240+120*s
	r := rng(uint64(s))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			d := math.Hypot(float64(x-w/2), float64(y-h/2))
			img.Set(x, y, color.RGBA{
				R: uint8(255 * x / w), G: uint8(255 * y / h),
				B: uint8(128+127*math.Sin(d/(6+float64(s)))) ^ uint8(r.IntN(8)), A: 255,
			})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("encode image input: %w", err)
	}
	return b.Bytes(), nil
}

// rnnText is the rnn function's input: 50 characters of pseudo-text and
// 20 to generate (shape 1), 100 and 40 (shape 2). A TCG guest here takes
// about 20 times the host's time on it.
func rnnText(s int) ([]byte, error) {
	r := rng(uint64(s))
	words := strings.Fields("the guest reads its pages from the memory file while the prefetch brings the working set into the page cache")
	var b strings.Builder
	for b.Len() < 50*s {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return json.Marshal(map[string]any{"text": b.String()[:50*s], "generate": 20 * s})
}
