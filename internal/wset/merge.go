package wset

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// Merge unites working sets recorded on the same memory file with
// different inputs. The union keeps the first set's first-touch order, then
// appends the pages only later sets touched, each in its own order: the
// first recording stays the best guess of what a restore touches first.
// The union counts, per page, how many recordings touched it (Set.Counts):
// a set with counts brings its own counts and recordings, one without
// counts one recording.
// common holds the pages every set holds, the part of the working set that
// does not depend on the input, in the first set's first-touch order (its
// Zero likewise).
func Merge(sets ...*Set) (union, common *Set, err error) {
	if len(sets) == 0 {
		return nil, nil, errors.New("merge: no working sets")
	}
	mem := sets[0].Mem
	for i, s := range sets {
		if err := s.validate(); err != nil {
			return nil, nil, fmt.Errorf("merge: set %d: %w", i+1, err)
		}
		if err := sets[0].Check(s.Mem); err != nil {
			return nil, nil, fmt.Errorf("merge: set %d against set 1: %w", i+1, err)
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
	inter, interZero := sorted(sets[0].Extents), sorted(sets[0].Zero)
	for i, s := range sets {
		for _, e := range s.Extents {
			b.Add(e.Page, e.N)
		}
		for _, e := range s.Zero {
			zero.Add(e.Page, e.N)
		}
		if i > 0 {
			inter = pages.Intersect(inter, sorted(s.Extents))
			interZero = pages.Intersect(interZero, sorted(s.Zero))
		}
	}
	// How many recordings touched each page: a set with counts brings its
	// own, one without counts one recording.
	counts := map[uint64]uint32{}
	inputs := 0
	for _, s := range sets {
		inputs += s.Recordings()
		s.eachCount(func(p uint64, c uint32) { counts[p] += c })
	}
	ext := b.Extents()
	perPage := make([]uint32, 0, PageCount(ext))
	for _, e := range ext {
		for p := e.Page; p < e.End(); p++ {
			perPage = append(perPage, counts[p])
		}
	}
	now := time.Now().UTC()
	union = &Set{
		Inputs:  inputs,
		Counts:  countRuns(perPage),
		Version: Version,
		Mem:     mem,
		Extents: ext,
		Zero:    zero.Extents(),
		Created: now,
		Source:  fmt.Sprintf("merge of %d recordings", len(sets)),
	}
	common = &Set{
		Version: Version,
		Mem:     mem,
		Extents: inOrder(sets[0].Extents, inter),
		Zero:    inOrder(sets[0].Zero, interZero),
		Created: now,
		Source:  fmt.Sprintf("pages common to %d recordings", len(sets)),
	}
	return union, common, nil
}

// inOrder returns the parts of ext (any order, disjoint) that keep (sorted
// by page, disjoint) covers, in ext's order.
func inOrder(ext, keep []pages.Extent) []pages.Extent {
	var out []pages.Extent
	for _, e := range ext {
		i, _ := slices.BinarySearchFunc(keep, e.Page, func(k pages.Extent, p uint64) int {
			if k.End() <= p {
				return -1
			}
			return 1
		})
		for ; i < len(keep) && keep[i].Page < e.End(); i++ {
			lo, hi := max(e.Page, keep[i].Page), min(e.End(), keep[i].End())
			if k := len(out); k > 0 && out[k-1].End() == lo {
				out[k-1].N += hi - lo
			} else {
				out = append(out, pages.Extent{Page: lo, N: hi - lo})
			}
		}
	}
	return out
}
