// Package pyfn knows the functions of the python runtime image (package
// rootfs ships their code): their names, the inputs that arrive with a
// request in each of their input shapes, and their results computed on
// the host by the same runner over the same image.
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
	"sort"
	"strings"
)

// Runtime is the runtime these functions run in.
const Runtime = "python"

// Shapes is how many input shapes each function has: shape 1 is the one a
// snapshot warms up with, 2 differs in size or content.
const Shapes = 2

// function is one Python function and its inputs.
type function struct {
	// input makes the payload of shape 1 or 2.
	input func(shape int) ([]byte, error)
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
}

// Names lists the functions, sorted.
func Names() []string {
	var out []string
	for n := range fns {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Has reports whether name is a Python function.
func Has(name string) bool { _, ok := fns[name]; return ok }

// GuestMiB is the guest RAM a snapshot of a Python function gets by
// default: the interpreter, numpy and PIL with their page cache take about
// 100 MiB after a run.
func GuestMiB(string) int { return 256 }

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
