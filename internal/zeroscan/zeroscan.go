// Package zeroscan finds the all-zero pages of a snapshot memory file by
// reading it, the way FaaSnap does before a restore: a VMM can then map
// non-zero regions from the file and leave the rest to anonymous zero
// memory. snapbpf gets its holes from the guest instead (free page
// reporting at snapshot time); this package is the comparison.
//
// The reading is pages.Scan: holes are skipped (SEEK_DATA/SEEK_HOLE), so a
// sparse file costs only its data, read sequentially in large chunks, each
// page compared with a zero page; this package builds FaaSnap's regions.
package zeroscan

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// MergeGapPages is FaaSnap's merge threshold: a zero gap shorter than this
// many pages between two non-zero regions is mapped from the file along
// with them, because a separate mapping per small gap costs more than
// reading a few zero pages.
const MergeGapPages = 32

// Options tune a scan.
type Options struct {
	// Cold evicts the file's clean cached pages first (fadvise DONTNEED),
	// so the scan time includes reading from storage.
	Cold bool
	// MergeGapPages overrides MergeGapPages when positive.
	MergeGapPages int
	// KeepRegions keeps the merged regions in Result.Regions.
	KeepRegions bool
}

// Region is a run of pages, in page numbers of the file.
type Region struct {
	Start int64 `json:"start"`
	Pages int64 `json:"pages"`
}

// Result is what a scan found. Pages are 4 KiB pages of the file; a page
// that is partly data and partly hole counts as a data page.
type Result struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	Pages     int64  `json:"pages"`
	HolePages int64  `json:"hole_pages"` // never read: no data on disk
	DataPages int64  `json:"data_pages"` // read and compared
	// ZeroPages are data pages holding only zero bytes: what FaaSnap's scan
	// finds beyond the holes.
	ZeroPages    int64 `json:"zero_pages"`
	NonZeroPages int64 `json:"nonzero_pages"`
	// RawRegions counts maximal runs of non-zero pages. MergedRegions
	// counts them after zero gaps (zero data pages or holes) shorter than
	// MergeGap pages are merged into the regions around them; MergedPages
	// is the pages those regions span, zero pages included.
	RawRegions    int64    `json:"raw_regions"`
	MergedRegions int64    `json:"merged_regions"`
	MergedPages   int64    `json:"merged_pages"`
	MergeGap      int      `json:"merge_gap_pages"`
	Regions       []Region `json:"regions,omitempty"`
	ReadBytes     int64    `json:"read_bytes"`
	Cold          bool     `json:"cold"`
	ElapsedMs     float64  `json:"elapsed_ms"`
}

// File scans the file at path.
func File(path string, o Options) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zero scan: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("zero scan: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("zero scan %s: not a regular file", path)
	}
	fd := int(f.Fd())
	if o.Cold {
		if err := pagecache.Evict(f, 0, 0); err != nil {
			return nil, fmt.Errorf("zero scan: %w", err)
		}
	}
	// Only reads the kernel's readahead can help with: ask for more of it.
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)

	gap := o.MergeGapPages
	if gap <= 0 {
		gap = MergeGapPages
	}
	size := fi.Size()
	r := &Result{Path: path, Size: size, Pages: int64(pages.Count(size)), MergeGap: gap, Cold: o.Cold}
	m := merger{gap: int64(gap), keep: o.KeepRegions, lastNonZero: -1}
	start := time.Now()
	r.ReadBytes, err = pages.Scan(f, func(p uint64, zero bool) {
		r.DataPages++
		if zero {
			r.ZeroPages++
			return
		}
		r.NonZeroPages++
		m.nonZero(int64(p))
	})
	if err != nil {
		return nil, fmt.Errorf("zero scan %s: %w", path, err)
	}
	r.HolePages = r.Pages - r.DataPages
	m.finish()
	r.RawRegions, r.MergedRegions, r.MergedPages, r.Regions = m.raw, m.merged, m.mergedPages, m.regions
	r.ElapsedMs = float64(time.Since(start).Microseconds()) / 1000
	return r, nil
}

// merger builds non-zero regions from the non-zero pages in increasing
// order, merging the FaaSnap way.
type merger struct {
	gap  int64
	keep bool

	lastNonZero int64 // -1 before the first
	raw         int64
	cur         Region // the merged region being built; Pages 0 before the first
	merged      int64
	mergedPages int64
	regions     []Region
}

func (m *merger) nonZero(p int64) {
	if p != m.lastNonZero+1 || m.lastNonZero < 0 {
		m.raw++
	}
	m.lastNonZero = p
	if m.cur.Pages > 0 && p-(m.cur.Start+m.cur.Pages) < m.gap {
		m.cur.Pages = p + 1 - m.cur.Start
		return
	}
	m.finish()
	m.cur = Region{Start: p, Pages: 1}
}

// finish closes the region being built.
func (m *merger) finish() {
	if m.cur.Pages == 0 {
		return
	}
	m.merged++
	m.mergedPages += m.cur.Pages
	if m.keep {
		m.regions = append(m.regions, m.cur)
	}
	m.cur = Region{}
}
