package functions

import (
	"fmt"
	"math"
)

func init() {
	register(Spec{
		Name:           "rnn",
		Summary:        "run a 2-layer LSTM over 20 input-selected tokens and classify the sequence; every step reads all LSTM weights (FunctionBench rnn_serving)",
		DefaultDataMiB: 32,
		memory:         func(d int) (int, int) { return d, 1 },
		newImpl:        func() impl { return &rnnFunc{} },
	})
}

const (
	rnnLayers  = 2
	rnnSeqLen  = 20
	rnnClasses = 64
)

// rnnFunc is a word-level LSTM classifier. Half of DataMiB is the LSTM
// (read in full at every step), the rest is the embedding table, of which
// an invoke reads one row per input token.
type rnnFunc struct {
	hidden, vocab int
	embed         []float32 // vocab x hidden
	layers        []lstmLayer
	head          []float32 // classes x hidden
	headBias      []float32
}

// lstmLayer holds the four gates (input, forget, cell, output) stacked:
// w is 4H x 2H over [x; h], b is 4H.
type lstmLayer struct {
	w, b []float32
}

func (f *rnnFunc) init(dataMiB int) error {
	total := dataMiB * MiB / 4
	// 2 layers x 4H x 2H floats take half the budget; H a multiple of 32.
	h := int(math.Sqrt(float64(total)/2/float64(rnnLayers*8))) / 32 * 32
	if h < 32 {
		return fmt.Errorf("%d MiB is too small for an LSTM", dataMiB)
	}
	f.hidden = h
	used := rnnLayers*(8*h*h+4*h) + rnnClasses*(h+1)
	f.vocab = (total - used) / h
	if f.vocab < rnnSeqLen {
		return fmt.Errorf("%d MiB leaves no room for embeddings", dataMiB)
	}
	r := newRNG(seedFor("rnn/init", 0))
	f.embed = make([]float32, f.vocab*h)
	r.fillUniform32(f.embed, 1)
	for l := 0; l < rnnLayers; l++ {
		ly := lstmLayer{w: make([]float32, 4*h*2*h), b: make([]float32, 4*h)}
		r.fillUniform32(ly.w, xavier(2*h))
		r.fillUniform32(ly.b, 0.1)
		f.layers = append(f.layers, ly)
	}
	f.head = make([]float32, rnnClasses*h)
	r.fillUniform32(f.head, xavier(h))
	f.headBias = make([]float32, rnnClasses)
	r.fillUniform32(f.headBias, 0.1)
	return nil
}

func (f *rnnFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("rnn", input))
	h := f.hidden
	hs := make([][]float32, rnnLayers) // hidden state per layer
	cs := make([][]float32, rnnLayers) // cell state per layer
	for l := range hs {
		hs[l] = make([]float32, h)
		cs[l] = make([]float32, h)
	}
	xh := make([]float32, 2*h)
	gates := make([]float32, 4*h)
	for t := 0; t < rnnSeqLen; t++ {
		tok := r.intn(f.vocab)
		copy(xh[:h], f.embed[tok*h:(tok+1)*h])
		for l, ly := range f.layers {
			copy(xh[h:], hs[l])
			linear(gates, xh, ly.w, ly.b, 2*h, 4*h, 1)
			for j := 0; j < h; j++ {
				in := sigmoid(gates[j])
				forget := sigmoid(gates[h+j])
				cell := tanh(gates[2*h+j])
				out := sigmoid(gates[3*h+j])
				cs[l][j] = float32(forget*cs[l][j]) + float32(in*cell)
				hs[l][j] = out * tanh(cs[l][j])
			}
			copy(xh[:h], hs[l])
		}
	}
	logits := make([]float32, rnnClasses)
	linear(logits, hs[rnnLayers-1], f.head, f.headBias, h, rnnClasses, 1)
	softmax(logits)
	d := newDigest()
	d.writeFloat32s(logits)
	for l := range hs {
		d.writeFloat32s(hs[l])
		d.writeFloat32s(cs[l])
	}
	lstm := rnnLayers * (len(f.layers[0].w) + len(f.layers[0].b))
	return Result{
		Checksum:     d.sum(),
		OutputBytes:  int64(4 * (rnnClasses + 2*rnnLayers*h)),
		TouchedBytes: int64(4 * (lstm + len(f.head) + rnnSeqLen*h)),
	}, nil
}
