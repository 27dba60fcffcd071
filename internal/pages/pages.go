// Package pages is the unit snapbpf counts memory files in: the page size,
// a run of pages (Extent), and which pages of a file hold data rather than
// holes (SEEK_DATA/SEEK_HOLE). Every package that speaks of pages of a file
// uses these, so a page number means the same thing everywhere.
package pages

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// Size is the page size: the host page cache's granularity and the guest's
// page on the platforms snapbpf supports. File formats that store page
// numbers (working sets, traces) are in this unit.
const Size = 4096

// Count is how many pages hold n bytes (a partial page counts).
func Count(n int64) uint64 { return uint64((n + Size - 1) / Size) }

// Extent is a run of N pages starting at page index Page of a file.
type Extent struct {
	Page uint64
	N    uint64
}

// End is the page index just past the extent.
func (e Extent) End() uint64 { return e.Page + e.N }

// MarshalJSON writes an extent as [first_page, n_pages].
func (e Extent) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "[%d,%d]", e.Page, e.N), nil
}

// UnmarshalJSON reads an extent written by MarshalJSON.
func (e *Extent) UnmarshalJSON(b []byte) error {
	var pair []uint64
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("extent: %w", err)
	}
	if len(pair) != 2 {
		return fmt.Errorf("extent: want [first_page, n_pages], got %d numbers", len(pair))
	}
	e.Page, e.N = pair[0], pair[1]
	return nil
}

// Search returns the index of the first of sorted, disjoint extents that
// ends after page p, and whether that extent holds p.
func Search(sorted []Extent, p uint64) (int, bool) {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i].End() > p })
	return i, i < len(sorted) && sorted[i].Page <= p
}

// Intersect returns the pages both a and b hold; both are sorted by page
// and disjoint, and so is the result.
func Intersect(a, b []Extent) []Extent {
	var out []Extent
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo := max(a[i].Page, b[j].Page)
		hi := min(a[i].End(), b[j].End())
		if lo < hi {
			out = append(out, Extent{Page: lo, N: hi - lo})
		}
		if a[i].End() < b[j].End() {
			i++
		} else {
			j++
		}
	}
	return out
}

// Data returns the runs of pages of the file at path that hold data, in
// order, merged where they touch. A page that is partly data counts as data;
// on a filesystem that cannot report holes the whole file is data. It reads
// no file contents.
func Data(path string) ([]Extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data pages: %w", err)
	}
	defer f.Close()
	c, err := NewDataCursor(f)
	if err != nil {
		return nil, err
	}
	var out []Extent
	for p := uint64(0); ; {
		e, err := c.Next(p)
		if err != nil {
			return nil, err
		}
		if e.N == 0 {
			return out, nil
		}
		if k := len(out); k > 0 && out[k-1].End() >= e.Page {
			out[k-1].N = max(out[k-1].End(), e.End()) - out[k-1].Page
		} else {
			out = append(out, e)
		}
		p = e.End()
	}
}

// DataCursor walks a file's data runs for ascending pages, remembering the
// last run so that many questions about one run cost no system calls. It
// moves the file's offset.
type DataCursor struct {
	f     *os.File
	pages uint64 // pages in the file when the cursor was made
	last  Extent // last run found
	valid bool
}

// NewDataCursor returns a cursor over f's data runs as f's size is now.
func NewDataCursor(f *os.File) (*DataCursor, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("data pages of %s: %w", f.Name(), err)
	}
	return &DataCursor{f: f, pages: Count(st.Size())}, nil
}

// Pages is the file's length in pages.
func (c *DataCursor) Pages() uint64 { return c.pages }

// Next returns the data run that holds page p, from p on, or else the first
// one after p; an extent with N == 0 (at Pages()) means no data is left.
func (c *DataCursor) Next(p uint64) (Extent, error) {
	if c.valid && p >= c.last.Page && p < c.last.End() {
		return Extent{Page: p, N: c.last.End() - p}, nil
	}
	if c.valid && p < c.last.Page {
		return c.last, nil
	}
	if p >= c.pages {
		return Extent{Page: c.pages}, nil
	}
	off := int64(p) * Size
	d, err := c.f.Seek(off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		c.last, c.valid = Extent{Page: c.pages}, true // only a hole remains
		return c.last, nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		// No hole reporting: everything is data.
		c.last, c.valid = Extent{Page: 0, N: c.pages}, true
		return Extent{Page: p, N: c.pages - p}, nil
	}
	if err != nil {
		return Extent{}, fmt.Errorf("seek data in %s at %d: %w", c.f.Name(), off, err)
	}
	h, err := c.f.Seek(d, unix.SEEK_HOLE)
	if err != nil {
		return Extent{}, fmt.Errorf("seek hole in %s at %d: %w", c.f.Name(), d, err)
	}
	if h <= d {
		return Extent{}, fmt.Errorf("seek hole in %s at %d: went back to %d", c.f.Name(), d, h)
	}
	// Whole pages: a block-granular run may start or end inside one. The
	// file may have grown meanwhile: answer for the size we were made with.
	first, end := uint64(d)/Size, min(Count(h), c.pages)
	if first >= c.pages {
		c.last, c.valid = Extent{Page: c.pages}, true
		return c.last, nil
	}
	c.last, c.valid = Extent{Page: first, N: end - first}, true
	if p > first {
		return Extent{Page: p, N: end - p}, nil
	}
	return c.last, nil
}
