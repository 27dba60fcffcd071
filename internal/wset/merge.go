package wset

import (
	"errors"
	"fmt"
	"time"
)

// Merge unites working sets recorded on the same memory file with
// different inputs. The union keeps the first set's first-touch order, then
// appends the pages only later sets touched, each in its own order: the
// first recording stays the best guess of what a restore touches first.
// common is the number of pages every set holds, the part of the working
// set that does not depend on the input.
func Merge(sets ...*Set) (union *Set, common int64, err error) {
	if len(sets) == 0 {
		return nil, 0, errors.New("merge: no working sets")
	}
	mem := sets[0].Mem
	for i, s := range sets {
		if err := s.validate(); err != nil {
			return nil, 0, fmt.Errorf("merge: set %d: %w", i+1, err)
		}
		if err := sets[0].Check(s.Mem); err != nil {
			return nil, 0, fmt.Errorf("merge: set %d against set 1: %w", i+1, err)
		}
		// A set written before snapshots had IDs still merges with one
		// that has it; the union keeps whatever is known.
		if mem.SnapshotID == "" {
			mem.SnapshotID = s.Mem.SnapshotID
		}
		if mem.Fingerprint == "" {
			mem.Fingerprint = s.Mem.Fingerprint
		}
	}

	var b, zero Builder
	inter := sorted(sets[0].Extents)
	for i, s := range sets {
		for _, e := range s.Extents {
			b.Add(e.Page, e.N)
		}
		for _, e := range s.Zero {
			zero.Add(e.Page, e.N)
		}
		if i > 0 {
			inter = intersect(inter, sorted(s.Extents))
		}
	}
	for _, e := range inter {
		common += int64(e.N)
	}
	union = &Set{
		Version: Version,
		Mem:     mem,
		Extents: b.Extents(),
		Zero:    zero.Extents(),
		Created: time.Now().UTC(),
		Source:  fmt.Sprintf("merge of %d recordings", len(sets)),
	}
	return union, common, nil
}

// intersect returns the pages both a and b hold; both are sorted by page
// and disjoint, and so is the result.
func intersect(a, b []Extent) []Extent {
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
