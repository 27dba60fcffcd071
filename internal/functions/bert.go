package functions

import (
	"fmt"
	"math"
)

func init() {
	register(Spec{
		Name: "bert",
		Summary: "encode 16 input-selected tokens with a BERT-style transformer whose feed-forward blocks are 8 experts per layer (top-1 routing); " +
			"attention weights are read by every input, experts and embedding rows depend on it",
		DefaultDataMiB: 128,
		memory:         func(d int) (int, int) { return d, 2 },
		newImpl:        func() impl { return &bertFunc{} },
	})
}

const (
	bertSeqLen  = 16
	bertHeadDim = 64
	bertExperts = 8
	bertClasses = 2
)

// bertFunc is a post-LayerNorm transformer encoder (as in BERT) whose MLP
// is a switch (mixture-of-experts) layer. A dense 128 MiB encoder would
// cost every weight once per token, far too slow under TCG for a useful
// sequence length; with experts each token pays for one eighth of the MLP
// weights while a 16-token input still reads most of them, and which ones
// depends on the input, like the token embedding rows.
type bertFunc struct {
	layers, dim, ffn, vocab int
	tokEmbed, posEmbed      []float32 // vocab x dim, seqLen x dim
	embG, embB              []float32
	blocks                  []bertLayer
	pool, poolB             []float32 // dim x dim, dim
	cls, clsB               []float32 // classes x dim, classes
}

type bertLayer struct {
	wq, wk, wv, wo, bq, bk, bv, bo []float32
	ln1G, ln1B, ln2G, ln2B         []float32
	router                         []float32 // experts x dim
	experts                        []bertExpert
}

type bertExpert struct {
	w1, b1, w2, b2 []float32 // ffn x dim, ffn, dim x ffn, dim
}

// bertShape picks the layer count and width for a budget of dataMiB: about
// two thirds in the layers, the rest in the token embedding table.
func bertShape(dataMiB int) (layers, dim int) {
	layers = min(max(dataMiB/24+1, 2), 12)
	floats := float64(dataMiB) * MiB / 4
	dim = int(math.Sqrt(0.66*floats/float64(36*layers))) / bertHeadDim * bertHeadDim
	return layers, dim
}

func (f *bertFunc) init(dataMiB int) error {
	f.layers, f.dim = bertShape(dataMiB)
	if f.dim < bertHeadDim {
		return fmt.Errorf("%d MiB is too small for a transformer", dataMiB)
	}
	d := f.dim
	f.ffn = 2 * d
	perLayer := 4*d*d + 4*d + 4*d + bertExperts*d + bertExperts*(2*d*f.ffn+f.ffn+d)
	fixed := f.layers*perLayer + bertSeqLen*d + 2*d + d*d + d + bertClasses*(d+1)
	f.vocab = (dataMiB*MiB/4 - fixed) / d
	if f.vocab < bertSeqLen {
		return fmt.Errorf("%d MiB leaves no room for embeddings", dataMiB)
	}
	r := newRNG(seedFor("bert/init", 0))
	uniform := func(n int, scale float32) []float32 {
		w := make([]float32, n)
		r.fillUniform32(w, scale)
		return w
	}
	ones := func(n int) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = 1
		}
		return w
	}
	f.tokEmbed = uniform(f.vocab*d, 1)
	f.posEmbed = uniform(bertSeqLen*d, 0.5)
	f.embG, f.embB = ones(d), uniform(d, 0.02)
	for l := 0; l < f.layers; l++ {
		b := bertLayer{
			wq: uniform(d*d, xavier(d)), wk: uniform(d*d, xavier(d)),
			wv: uniform(d*d, xavier(d)), wo: uniform(d*d, xavier(d)),
			bq: uniform(d, 0.02), bk: uniform(d, 0.02), bv: uniform(d, 0.02), bo: uniform(d, 0.02),
			ln1G: ones(d), ln1B: uniform(d, 0.02), ln2G: ones(d), ln2B: uniform(d, 0.02),
			router: uniform(bertExperts*d, xavier(d)),
		}
		for e := 0; e < bertExperts; e++ {
			b.experts = append(b.experts, bertExpert{
				w1: uniform(f.ffn*d, xavier(d)), b1: uniform(f.ffn, 0.02),
				w2: uniform(d*f.ffn, xavier(f.ffn)), b2: uniform(d, 0.02),
			})
		}
		f.blocks = append(f.blocks, b)
	}
	f.pool, f.poolB = uniform(d*d, xavier(d)), uniform(d, 0.02)
	f.cls, f.clsB = uniform(bertClasses*d, xavier(d)), uniform(bertClasses, 0.02)
	return nil
}

func (f *bertFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("bert", input))
	d, s := f.dim, bertSeqLen
	x := make([]float32, s*d)
	touched := 0
	for t := 0; t < s; t++ {
		tok := 0 // [CLS]
		if t > 0 {
			tok = r.intn(f.vocab)
		}
		row := x[t*d : (t+1)*d]
		copy(row, f.tokEmbed[tok*d:(tok+1)*d])
		for j, p := range f.posEmbed[t*d : (t+1)*d] {
			row[j] += p
		}
		layerNorm(row, f.embG, f.embB)
		touched += 2 * d
	}
	sc := newBertScratch(s, d, f.ffn)
	for l := range f.blocks {
		touched += f.attention(&f.blocks[l], x, sc)
		touched += f.moe(&f.blocks[l], x, sc)
	}
	// Pooler over [CLS] and a classifier, as in sequence classification.
	pooled := make([]float32, d)
	linear(pooled, x[:d], f.pool, f.poolB, d, d, 1)
	for j := range pooled {
		pooled[j] = tanh(pooled[j])
	}
	logits := make([]float32, bertClasses)
	linear(logits, pooled, f.cls, f.clsB, d, bertClasses, 1)
	softmax(logits)
	touched += len(f.pool) + len(f.cls)
	dg := newDigest()
	dg.writeFloat32s(logits)
	dg.writeFloat32s(x)
	return Result{
		Checksum:     dg.sum(),
		OutputBytes:  int64(4 * (len(logits) + len(x))),
		TouchedBytes: int64(4 * touched),
	}, nil
}

type bertScratch struct {
	q, k, v, ctx, tmp, hid []float32
	scores                 []float32
}

func newBertScratch(s, d, ffn int) *bertScratch {
	return &bertScratch{
		q: make([]float32, s*d), k: make([]float32, s*d), v: make([]float32, s*d),
		ctx: make([]float32, s*d), tmp: make([]float32, s*d),
		hid: make([]float32, s*ffn), scores: make([]float32, s),
	}
}

// attention runs multi-head self-attention with a residual connection and
// LayerNorm on x (seqLen x dim) in place; it returns the weights it read.
func (f *bertFunc) attention(b *bertLayer, x []float32, sc *bertScratch) int {
	d, s := f.dim, bertSeqLen
	linear(sc.q, x, b.wq, b.bq, d, d, s)
	linear(sc.k, x, b.wk, b.bk, d, d, s)
	linear(sc.v, x, b.wv, b.bv, d, d, s)
	scale := float32(1 / math.Sqrt(bertHeadDim))
	clear(sc.ctx)
	for h := 0; h < d/bertHeadDim; h++ {
		lo, hi := h*bertHeadDim, (h+1)*bertHeadDim
		for i := 0; i < s; i++ {
			qi := sc.q[i*d+lo : i*d+hi]
			for j := 0; j < s; j++ {
				sc.scores[j] = dot(qi, sc.k[j*d+lo:j*d+hi]) * scale
			}
			softmax(sc.scores)
			out := sc.ctx[i*d+lo : i*d+hi]
			for j := 0; j < s; j++ {
				axpy(sc.scores[j], sc.v[j*d+lo:j*d+hi], out)
			}
		}
	}
	linear(sc.tmp, sc.ctx, b.wo, b.bo, d, d, s)
	for t := 0; t < s; t++ {
		row := x[t*d : (t+1)*d]
		for j, v := range sc.tmp[t*d : (t+1)*d] {
			row[j] += v
		}
		layerNorm(row, b.ln1G, b.ln1B)
	}
	return 4*d*d + 4*d + 2*d + len(b.router)
}

// moe routes each token to its top expert (ties to the lowest index), runs
// each used expert once over its tokens, scales by the router probability
// (as in Switch Transformers), adds the residual and normalises. It returns
// the weights it read.
func (f *bertFunc) moe(b *bertLayer, x []float32, sc *bertScratch) int {
	d, s, ffn := f.dim, bertSeqLen, f.ffn
	var choice [bertSeqLen]int
	var gate [bertSeqLen]float32
	probs := make([]float32, bertExperts)
	for t := 0; t < s; t++ {
		linear(probs, x[t*d:(t+1)*d], b.router, nil, d, bertExperts, 1)
		softmax(probs)
		best := 0
		for e, p := range probs {
			if p > probs[best] {
				best = e
			}
		}
		choice[t], gate[t] = best, probs[best]
	}
	touched := 2 * d
	tokens := make([]int, 0, s)
	in := sc.tmp
	for e := range b.experts {
		tokens = tokens[:0]
		for t := 0; t < s; t++ {
			if choice[t] == e {
				tokens = append(tokens, t)
			}
		}
		if len(tokens) == 0 {
			continue
		}
		ex := &b.experts[e]
		n := len(tokens)
		for i, t := range tokens {
			copy(in[i*d:(i+1)*d], x[t*d:(t+1)*d])
		}
		hid := sc.hid[:n*ffn]
		linear(hid, in[:n*d], ex.w1, ex.b1, d, ffn, n)
		for i, v := range hid {
			hid[i] = gelu(v)
		}
		out := sc.ctx[:n*d]
		linear(out, hid, ex.w2, ex.b2, ffn, d, n)
		for i, t := range tokens {
			axpy(gate[t], out[i*d:(i+1)*d], x[t*d:(t+1)*d])
		}
		touched += 2*d*ffn + ffn + d
	}
	for t := 0; t < s; t++ {
		layerNorm(x[t*d:(t+1)*d], b.ln2G, b.ln2B)
	}
	return touched
}
