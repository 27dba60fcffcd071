package functions

// textGen produces English-looking text: pseudo-words built from syllables,
// drawn with a Zipf-like frequency, grouped into sentences and paragraphs.
// Random bytes would not compress and would make gzip and json unrealistic.
type textGen struct {
	r     *rng
	vocab []string
	// rank maps 16 random bits to a vocabulary index with P(i) ~ 1/(i+1).
	rank []uint16
}

var syllables = []string{
	"a", "an", "ar", "be", "ca", "con", "de", "di", "en", "er", "ex", "fa", "for",
	"ga", "in", "is", "ka", "la", "le", "lo", "ma", "me", "mi", "mo", "na", "ne",
	"no", "on", "or", "pa", "per", "pro", "ra", "re", "ri", "ro", "sa", "se", "si",
	"so", "sta", "ta", "te", "ti", "to", "tion", "tra", "un", "ve", "vi", "wa", "ya",
}

func newTextGen(seed uint64, vocabSize int) *textGen {
	g := &textGen{r: newRNG(seed), vocab: make([]string, vocabSize), rank: make([]uint16, 1<<16)}
	for i := range g.vocab {
		// Frequent words are short, as in natural language.
		n := 1 + g.r.intn(2) + min(i/512, 2)
		var w []byte
		for j := 0; j < n; j++ {
			w = append(w, syllables[g.r.intn(len(syllables))]...)
		}
		g.vocab[i] = string(w)
	}
	// Inverse of the harmonic CDF, built with + and / only so that host and
	// guest compute the same table (math.Pow goes through math.Exp, whose
	// amd64 code path depends on the CPU).
	var total float64
	for i := 0; i < vocabSize; i++ {
		total += 1 / float64(i+1)
	}
	var cdf float64
	i := 0
	for j := range g.rank {
		target := (float64(j) + 0.5) / (1 << 16) * total
		for i < vocabSize-1 && cdf+1/float64(i+1) < target {
			cdf += 1 / float64(i+1)
			i++
		}
		g.rank[j] = uint16(i)
	}
	return g
}

func (g *textGen) word() string {
	return g.vocab[g.rank[g.r.uint64()&0xffff]]
}

// appendSentence appends one capitalised sentence of lo..hi words.
func (g *textGen) appendSentence(b []byte, lo, hi int) []byte {
	n := lo + g.r.intn(hi-lo+1)
	for i := 0; i < n; i++ {
		if i > 0 {
			if g.r.intn(12) == 0 {
				b = append(b, ',')
			}
			b = append(b, ' ')
		}
		w := g.word()
		start := len(b)
		if g.r.intn(40) == 0 {
			b = appendUint(b, uint64(g.r.intn(10000)))
		} else {
			b = append(b, w...)
		}
		if i == 0 && b[start] >= 'a' && b[start] <= 'z' {
			b[start] -= 'a' - 'A'
		}
	}
	return append(b, '.')
}

// fill writes paragraphs into b until it is full.
func (g *textGen) fill(b []byte) {
	para := make([]byte, 0, 4096)
	for pos := 0; pos < len(b); {
		para = para[:0]
		sentences := 3 + g.r.intn(6)
		for i := 0; i < sentences; i++ {
			if i > 0 {
				para = append(para, ' ')
			}
			para = g.appendSentence(para, 6, 22)
		}
		para = append(para, '\n', '\n')
		pos += copy(b[pos:], para)
	}
}

func appendUint(b []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
