package wset

import "math/bits"

// chunkPages is how many pages one chunk of a pageSet covers (256 MiB of
// memory file): chunks are allocated only where pages are, so a set costs
// memory in proportion to the span it touches, not to the file size.
const (
	chunkWords = 1024
	chunkPages = chunkWords * 64
)

// pageSet is a sparse bitset of page indexes with range operations that
// work a word at a time, so an extent of millions of pages costs thousands
// of operations, not millions.
type pageSet struct {
	chunks map[uint64]*[chunkWords]uint64
}

func newPageSet() *pageSet {
	return &pageSet{chunks: make(map[uint64]*[chunkWords]uint64)}
}

// add marks pages [p, p+n).
func (s *pageSet) add(p, n uint64) {
	for n > 0 {
		ci, off := p/chunkPages, p%chunkPages
		c := s.chunks[ci]
		if c == nil {
			c = new([chunkWords]uint64)
			s.chunks[ci] = c
		}
		k := min(n, chunkPages-off)
		setBits(c, off, k)
		p, n = p+k, n-k
	}
}

// missing calls fn for each maximal run of pages in [p, p+n) that is not in
// the set, in ascending order.
func (s *pageSet) missing(p, n uint64, fn func(p, n uint64)) {
	var runStart, runLen uint64
	flush := func() {
		if runLen > 0 {
			fn(runStart, runLen)
			runLen = 0
		}
	}
	extend := func(q, k uint64) {
		if runLen > 0 && runStart+runLen == q {
			runLen += k
			return
		}
		flush()
		runStart, runLen = q, k
	}
	for n > 0 {
		ci, off := p/chunkPages, p%chunkPages
		k := min(n, chunkPages-off)
		c := s.chunks[ci]
		if c == nil {
			extend(p, k)
		} else {
			clearRuns(c, off, k, func(o, m uint64) { extend(ci*chunkPages+o, m) })
		}
		p, n = p+k, n-k
	}
	flush()
}

// setBits sets bits [off, off+n) of c.
func setBits(c *[chunkWords]uint64, off, n uint64) {
	for n > 0 {
		w, b := off/64, off%64
		k := min(n, 64-b)
		c[w] |= mask(b, k)
		off, n = off+k, n-k
	}
}

// clearRuns calls fn for each run of clear bits in [off, off+n) of c.
func clearRuns(c *[chunkWords]uint64, off, n uint64, fn func(off, n uint64)) {
	for n > 0 {
		w, b := off/64, off%64
		k := min(n, 64-b)
		clear := ^c[w] & mask(b, k)
		for clear != 0 {
			lo := uint64(bits.TrailingZeros64(clear))
			run := uint64(bits.TrailingZeros64(^(clear >> lo)))
			fn(w*64+lo, run)
			clear &^= mask(lo, run)
		}
		off, n = off+k, n-k
	}
}

// mask has bits [b, b+k) set; 0 < k <= 64-b.
func mask(b, k uint64) uint64 {
	if k == 64 {
		return ^uint64(0)
	}
	return ((uint64(1) << k) - 1) << b
}
