package replay

import (
	"fmt"

	"github.com/snapbpf/snapbpf/internal/zeroscan"
)

// bitmap is a set of pages of a file.
type bitmap struct {
	n    uint64
	bits []uint64
}

func newBitmap(n uint64) *bitmap { return &bitmap{n: n, bits: make([]uint64, (n+63)/64)} }

func (b *bitmap) set(p uint64) {
	if p < b.n {
		b.bits[p/64] |= 1 << (p % 64)
	}
}

func (b *bitmap) has(p uint64) bool { return p < b.n && b.bits[p/64]&(1<<(p%64)) != 0 }

// pageRun is a run of pages.
type pageRun struct {
	Start uint64 `json:"start"`
	N     uint64 `json:"n"`
}

func (r pageRun) end() uint64 { return r.Start + r.N }

// scanNonZero reads the memory file and returns its non-zero pages (holes
// and pages of zero bytes are not), the way FaaSnap scans a snapshot.
func scanNonZero(mem string) (*bitmap, *zeroscan.Result, error) {
	// A merge gap of 1 keeps the raw runs of non-zero pages.
	r, err := zeroscan.File(mem, zeroscan.Options{MergeGapPages: 1, KeepRegions: true})
	if err != nil {
		return nil, nil, fmt.Errorf("scan %s for zero pages: %w", mem, err)
	}
	b := newBitmap(uint64(r.Pages))
	for _, reg := range r.Regions {
		for p := reg.Start; p < reg.Start+reg.Pages; p++ {
			b.set(uint64(p))
		}
	}
	return b, r, nil
}

// mergeRuns returns the runs of pages in b, with gaps of fewer than gap
// pages between runs merged into them (FaaSnap's interval threshold).
func mergeRuns(b *bitmap, gap uint64) []pageRun {
	var out []pageRun
	for p := uint64(0); p < b.n; p++ {
		if !b.has(p) {
			continue
		}
		if k := len(out); k > 0 && p-out[k-1].end() < gap {
			out[k-1].N = p + 1 - out[k-1].Start
			continue
		}
		out = append(out, pageRun{Start: p, N: 1})
	}
	return out
}
