package capture

import (
	"time"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// intersect returns the pages in both a and b (both sorted, disjoint).
func intersect(a, b []pages.Extent) []pages.Extent {
	var out []pages.Extent
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].Page, b[j].Page), min(a[i].End(), b[j].End())
		if lo < hi {
			out = append(out, pages.Extent{Page: lo, N: hi - lo})
		}
		if a[i].End() < b[j].End() {
			i++
		} else {
			j++
		}
	}
	return out
}

// clip splits accs into the parts that lie in data (sorted, disjoint) and
// the parts that lie in holes, cutting an access that straddles both.
func clip(accs []Access, data []pages.Extent) (inData, inHoles []Access) {
	piece := func(dst []Access, a Access, lo, hi uint64) []Access {
		if lo >= hi {
			return dst
		}
		a.Page, a.NPages = lo, uint32(hi-lo)
		return append(dst, a)
	}
	for _, a := range accs {
		lo, hi := a.Page, a.Page+uint64(a.NPages)
		// First extent that ends after lo.
		i, _ := pages.Search(data, lo)
		for ; i < len(data) && data[i].Page < hi; i++ {
			s, e := max(lo, data[i].Page), min(hi, data[i].End())
			inHoles = piece(inHoles, a, lo, s)
			inData = piece(inData, a, s, e)
			lo = e
		}
		inHoles = piece(inHoles, a, lo, hi)
	}
	return inData, inHoles
}

// resident returns the runs of path's pages that are in the page cache.
func resident(path string) ([]pages.Extent, uint64, error) {
	vec, err := pagecache.Residency(path)
	if err != nil {
		return nil, 0, err
	}
	var runs []pages.Extent
	var n uint64
	for i, v := range vec {
		if v&1 == 0 {
			continue
		}
		n++
		p := uint64(i)
		if k := len(runs); k > 0 && runs[k-1].End() == p {
			runs[k-1].N++
		} else {
			runs = append(runs, pages.Extent{Page: p, N: 1})
		}
	}
	return runs, n, nil
}

// settledResident is resident once readahead I/O has finished: mincore
// counts a page only when its read has completed, so right after a run it
// can miss readahead still in flight.
func settledResident(path string) ([]pages.Extent, uint64, error) {
	runs, n, err := resident(path)
	for i := 0; err == nil && i < 40; i++ {
		time.Sleep(25 * time.Millisecond)
		var m uint64
		var again []pages.Extent
		again, m, err = resident(path)
		if m == n {
			break
		}
		runs, n = again, m
	}
	return runs, n, err
}

// dropCache evicts path's cached pages and returns how many stayed cached:
// pages a recording cannot see.
func dropCache(path string) (uint64, error) {
	n, err := pagecache.Drop(path)
	return uint64(n), err
}

// countPages is the number of pages accs cover, repeats included.
func countPages(accs []Access) uint64 {
	var n uint64
	for _, a := range accs {
		n += uint64(a.NPages)
	}
	return n
}
