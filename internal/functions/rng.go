package functions

import "math"

// rng is a xoshiro256** generator. The functions use their own generator
// instead of math/rand so that the sequence is fixed by this package alone:
// host and guest must derive the same init data and the same invoke inputs.
type rng struct{ s [4]uint64 }

// newRNG seeds a generator from seed by running splitmix64, which spreads
// nearby seeds (0, 1, 2, ...) into unrelated states.
func newRNG(seed uint64) *rng {
	r := &rng{}
	for i := range r.s {
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		r.s[i] = z ^ (z >> 31)
	}
	return r
}

// seedFor mixes a function name and an invocation input into one seed so
// that two functions given the same input do not share a random stream.
func seedFor(name string, input uint64) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 0x100000001b3
	}
	return h ^ (input * 0x9e3779b97f4a7c15)
}

func rotl(x uint64, k uint) uint64 { return x<<k | x>>(64-k) }

func (r *rng) uint64() uint64 {
	s := &r.s
	out := rotl(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = rotl(s[3], 45)
	return out
}

// intn returns a value in [0, n). The modulo bias is irrelevant here: the
// values only pick offsets and tokens, they are not statistics.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.uint64() % uint64(n))
}

// float64 returns a value in [0, 1).
func (r *rng) float64() float64 {
	return float64(r.uint64()>>11) / (1 << 53)
}

// fillBytes fills b completely, so that every page of b is resident.
func (r *rng) fillBytes(b []byte) {
	for len(b) >= 8 {
		v := r.uint64()
		_ = b[7]
		b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		b[4], b[5], b[6], b[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		b = b[8:]
	}
	if len(b) > 0 {
		v := r.uint64()
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
	}
}

// fillUniform32 fills w with values uniform in [-scale, scale), two values
// per generator step to keep Init of large models cheap under TCG.
func (r *rng) fillUniform32(w []float32, scale float32) {
	const inv = 1.0 / (1 << 31)
	for i := 0; i < len(w); i += 2 {
		v := r.uint64()
		w[i] = float32(float64(int32(uint32(v)))*inv) * scale
		if i+1 < len(w) {
			w[i+1] = float32(float64(int32(uint32(v>>32)))*inv) * scale
		}
	}
}

// fillUniform64 fills w with values uniform in [-1, 1).
func (r *rng) fillUniform64(w []float64) {
	for i := range w {
		w[i] = 2*r.float64() - 1
	}
}

// xavier is the half-width of a uniform initialisation that keeps
// activations of a layer with fanIn inputs at unit scale.
func xavier(fanIn int) float32 {
	return float32(math.Sqrt(3 / float64(fanIn)))
}
