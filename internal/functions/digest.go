package functions

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
)

// digest is a cheap streaming checksum for bulk outputs: four xxhash-style
// integer lanes, finished with SHA-256 over the lane state. SHA-256 over tens
// of MiB would dominate an invoke under TCG (no SHA extensions emulated fast),
// while this costs about one multiply per 8 bytes and is pure integer code,
// so host and guest agree bit for bit.
type digest struct {
	v    [4]uint64
	buf  [32]byte
	nbuf int
	n    uint64
}

const (
	prime1 = 0x9e3779b185ebca87
	prime2 = 0xc2b2ae3d27d4eb4f
)

func newDigest() *digest {
	return &digest{v: [4]uint64{prime1, prime2, 1, ^uint64(0)}}
}

func (d *digest) round(b []byte) {
	_ = b[31]
	d.v[0] = rotl(d.v[0]+binary.LittleEndian.Uint64(b[0:])*prime2, 31) * prime1
	d.v[1] = rotl(d.v[1]+binary.LittleEndian.Uint64(b[8:])*prime2, 31) * prime1
	d.v[2] = rotl(d.v[2]+binary.LittleEndian.Uint64(b[16:])*prime2, 31) * prime1
	d.v[3] = rotl(d.v[3]+binary.LittleEndian.Uint64(b[24:])*prime2, 31) * prime1
}

// Write never fails; it has the io.Writer signature so compressors and
// encoders can stream into it.
func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	d.n += uint64(n)
	if d.nbuf > 0 {
		c := copy(d.buf[d.nbuf:], p)
		d.nbuf += c
		p = p[c:]
		if d.nbuf < len(d.buf) {
			return n, nil
		}
		d.round(d.buf[:])
		d.nbuf = 0
	}
	for len(p) >= 32 {
		d.round(p)
		p = p[32:]
	}
	d.nbuf = copy(d.buf[:], p)
	return n, nil
}

// writeFloat32s hashes the exact bit patterns, so any difference in rounding
// between host and guest changes the checksum.
func (d *digest) writeFloat32s(xs []float32) {
	var b [256]byte
	for len(xs) > 0 {
		k := min(len(xs), len(b)/4)
		for i := 0; i < k; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(xs[i]))
		}
		d.Write(b[:4*k])
		xs = xs[k:]
	}
}

func (d *digest) writeFloat64s(xs []float64) {
	var b [256]byte
	for len(xs) > 0 {
		k := min(len(xs), len(b)/8)
		for i := 0; i < k; i++ {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(xs[i]))
		}
		d.Write(b[:8*k])
		xs = xs[k:]
	}
}

// sum returns the hex SHA-256 of the lane state, the length and the tail.
func (d *digest) sum() string {
	h := sha256.New()
	var b [8]byte
	for _, v := range d.v {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	binary.LittleEndian.PutUint64(b[:], d.n)
	h.Write(b[:])
	h.Write(d.buf[:d.nbuf])
	return hex.EncodeToString(h.Sum(nil))
}
