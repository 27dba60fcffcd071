// Package wset is the working set of a memory file: which pages a restored
// microVM touched, in the order it first touched them, as page extents.
//
// A working set holds only offsets, never page contents: prefetch reads the
// pages from the memory file itself into its page cache. The set records the
// identity of the memory file it was recorded on (size, snapshot ID, a cheap
// content fingerprint) so it is never applied to another file.
package wset

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// MaxMemSize bounds the memory file a working set may describe (1 TiB). It
// keeps a corrupt or hostile file from making the tools allocate for an
// absurd span; microVM memory files are far smaller.
const MaxMemSize = 1 << 40

// Set is a working set.
type Set struct {
	// Version is the format version the set was read with; Write always
	// writes the current one.
	Version int
	// Mem identifies the memory file the set was recorded on.
	Mem Identity
	// Extents are the touched pages in first-touch order. No page appears
	// twice.
	Extents []pages.Extent
	// Zero are touched pages that were holes of the memory file: they hold
	// zeroes and cost no I/O, so they are not part of the working set, but
	// prefetch fills them into the page cache so that the first touch
	// does not fault the page in. First-touch order; disjoint from
	// Extents.
	Zero []pages.Extent
	// Inputs is how many recordings (inputs) the set unites, when it
	// counts them (format version 3): 0 for a set without counts, read
	// from an older file or made by hand, whose pages count once each.
	Inputs int
	// Counts say, when Inputs > 0, how many of those recordings touched
	// each page of Extents: runs over the pages of Extents in their
	// (first-touch) order, covering all of them. A restore can rank pages
	// by it; the prefetch issues them in first-touch order regardless.
	Counts []CountRun
	// Created is when the set was recorded.
	Created time.Time
	// Source says how the set was made (e.g. "record: fn=pyaes input=1",
	// "merge of 3 recordings"); free text for people.
	Source string
}

// CountRun is N consecutive pages, in the order of a set's Extents, that
// Count of its recordings touched.
type CountRun struct {
	N     uint64
	Count uint32
}

// maxInputs bounds Set.Inputs, against corrupt files.
const maxInputs = 1 << 20

// Recordings is how many recordings the set unites: Inputs, or 1 for a
// set without counts.
func (s *Set) Recordings() int { return max(s.Inputs, 1) }

// PageCounts returns Counts, or for a set without counts one run that
// counts every page once.
func (s *Set) PageCounts() []CountRun {
	if s.Inputs > 0 {
		return s.Counts
	}
	if n := s.Pages(); n > 0 {
		return []CountRun{{N: uint64(n), Count: 1}}
	}
	return nil
}

// eachCount calls fn for every page of Extents, in order, with how many
// recordings touched it.
func (s *Set) eachCount(fn func(page uint64, count uint32)) {
	runs := s.PageCounts()
	var left uint64
	var count uint32
	for _, e := range s.Extents {
		for p := e.Page; p < e.End(); p++ {
			for left == 0 && len(runs) > 0 {
				left, count = runs[0].N, runs[0].Count
				runs = runs[1:]
			}
			left--
			fn(p, count)
		}
	}
}

// CountPages is how many pages of a set Count of its recordings touched.
type CountPages struct {
	Count uint32 `json:"count"`
	Pages int64  `json:"pages"`
}

// CountSummary returns, for each count that occurs, how many pages have
// it, the most shared first.
func (s *Set) CountSummary() []CountPages {
	by := map[uint32]int64{}
	for _, r := range s.PageCounts() {
		by[r.Count] += int64(r.N)
	}
	out := make([]CountPages, 0, len(by))
	for c, n := range by {
		out = append(out, CountPages{Count: c, Pages: n})
	}
	slices.SortFunc(out, func(a, b CountPages) int { return cmp.Compare(b.Count, a.Count) })
	return out
}

// countRuns encodes per-page counts, in page order, as runs.
func countRuns(counts []uint32) []CountRun {
	var out []CountRun
	for _, c := range counts {
		if k := len(out); k > 0 && out[k-1].Count == c {
			out[k-1].N++
			continue
		}
		out = append(out, CountRun{N: 1, Count: c})
	}
	return out
}

// Pages is the number of pages in the set.
func (s *Set) Pages() int64 { return PageCount(s.Extents) }

// ZeroPages is the number of touched hole pages (Zero).
func (s *Set) ZeroPages() int64 { return PageCount(s.Zero) }

// PageCount is the number of pages in ext.
func PageCount(ext []pages.Extent) int64 {
	var n uint64
	for _, e := range ext {
		n += e.N
	}
	return int64(n)
}

// Bytes is the size of the set's pages in bytes.
func (s *Set) Bytes() int64 { return s.Pages() * pages.Size }

// FromPages turns page indexes in first-touch order into extents in
// first-touch order. A page that directly follows the previous extent
// extends it; a page seen before is dropped (its first touch counts).
func FromPages(pages []uint64) []pages.Extent {
	var b Builder
	for _, p := range pages {
		b.Add(p, 1)
	}
	return b.Extents()
}

// Builder collects touched page runs in first-touch order, for capture:
// a page-cache insertion may cover a large folio (2^order pages), so runs,
// not single pages, are the natural input.
type Builder struct {
	seen    *pageSet
	extents []pages.Extent
}

// Add records that pages [page, page+n) were touched now. Pages touched
// before are ignored; the rest extend the last extent when contiguous with
// it.
func (b *Builder) Add(page, n uint64) {
	if n == 0 {
		return
	}
	if b.seen == nil {
		b.seen = newPageSet()
	}
	// Pages past the largest memory file cannot be real; dropping them
	// keeps the bookkeeping bounded whatever a caller passes.
	const maxPages = MaxMemSize / pages.Size
	if page >= maxPages {
		return
	}
	n = min(n, maxPages-page)
	b.seen.missing(page, n, b.appendRun)
	b.seen.add(page, n)
}

func (b *Builder) appendRun(p, n uint64) {
	if k := len(b.extents); k > 0 && b.extents[k-1].End() == p {
		b.extents[k-1].N += n
		return
	}
	b.extents = append(b.extents, pages.Extent{Page: p, N: n})
}

// Extents returns the extents collected so far, in first-touch order.
func (b *Builder) Extents() []pages.Extent {
	return append([]pages.Extent(nil), b.extents...)
}

// Pages is the number of distinct pages added so far.
func (b *Builder) Pages() int64 { return PageCount(b.extents) }

// validate checks the invariants every stored set keeps: extents and zero
// extents are non-empty, inside the memory file, and all disjoint.
func (s *Set) validate() error {
	if s.Mem.Size < 0 || s.Mem.Size > MaxMemSize {
		return fmt.Errorf("memory file size %d out of range (0..%d)", s.Mem.Size, int64(MaxMemSize))
	}
	filePages := (uint64(s.Mem.Size) + pages.Size - 1) / pages.Size
	all := slices.Concat(s.Extents, s.Zero)
	for i, e := range all {
		if e.N == 0 {
			return fmt.Errorf("%s (page %d) is empty", s.extentName(i), e.Page)
		}
		if e.Page >= filePages || e.N > filePages-e.Page {
			return fmt.Errorf("%s (pages %d+%d) lies beyond the memory file's %d pages", s.extentName(i), e.Page, e.N, filePages)
		}
	}
	if i, j, ok := overlap(all); ok {
		return fmt.Errorf("%s (pages %d+%d) and %s (pages %d+%d) overlap",
			s.extentName(i), all[i].Page, all[i].N, s.extentName(j), all[j].Page, all[j].N)
	}
	return s.validateCounts()
}

// validateCounts checks that Counts cover Extents' pages, each counted by
// between 1 and Inputs recordings.
func (s *Set) validateCounts() error {
	switch {
	case s.Inputs < 0 || s.Inputs > maxInputs:
		return fmt.Errorf("%d recordings out of range (0..%d)", s.Inputs, maxInputs)
	case s.Inputs == 0 && len(s.Counts) > 0:
		return fmt.Errorf("%d count runs in a set that counts no recordings", len(s.Counts))
	case s.Inputs == 0:
		return nil
	}
	var total uint64
	for i, r := range s.Counts {
		if r.N == 0 {
			return fmt.Errorf("count run %d is empty", i)
		}
		if r.Count == 0 || int64(r.Count) > int64(s.Inputs) {
			return fmt.Errorf("count run %d: %d of %d recordings", i, r.Count, s.Inputs)
		}
		total += r.N
		if total > uint64(s.Pages()) {
			break
		}
	}
	if total != uint64(s.Pages()) {
		return fmt.Errorf("counts cover %d pages, the set has %d", total, s.Pages())
	}
	return nil
}

// extentName names entry i of Extents followed by Zero, for errors.
func (s *Set) extentName(i int) string {
	if i < len(s.Extents) {
		return fmt.Sprintf("extent %d", i)
	}
	return fmt.Sprintf("zero extent %d", i-len(s.Extents))
}

// overlap reports two extents that share a page, if any.
func overlap(ext []pages.Extent) (i, j int, ok bool) {
	idx := sortedIndex(ext)
	for k := 1; k < len(idx); k++ {
		a, b := idx[k-1], idx[k]
		if ext[b].Page < ext[a].End() {
			return min(a, b), max(a, b), true
		}
	}
	return 0, 0, false
}

// sortedIndex returns the indexes of ext ordered by page.
func sortedIndex(ext []pages.Extent) []int {
	idx := make([]int, len(ext))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(ext[a].Page, ext[b].Page) })
	return idx
}

// sorted returns a copy of ext ordered by page.
func sorted(ext []pages.Extent) []pages.Extent {
	out := slices.Clone(ext)
	slices.SortFunc(out, func(a, b pages.Extent) int { return cmp.Compare(a.Page, b.Page) })
	return out
}
