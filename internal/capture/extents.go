package capture

import (
	"fmt"
	"sort"
	"time"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// extent is a run of pages [start, end).
type extent struct{ start, end uint64 }

// dataExtents returns the pages of path that hold data, per SEEK_DATA and
// SEEK_HOLE. A page that is partly data counts as data.
func dataExtents(path string) ([]extent, error) {
	data, err := snapshot.DataExtents(path)
	if err != nil {
		return nil, fmt.Errorf("data extents of %s: %w", path, err)
	}
	var out []extent
	for _, d := range data {
		start := uint64(d.Off) / pages.Size
		end := (uint64(d.Off+d.Len) + pages.Size - 1) / pages.Size
		if n := len(out); n > 0 && out[n-1].end >= start {
			out[n-1].end = max(out[n-1].end, end)
		} else {
			out = append(out, extent{start, end})
		}
	}
	return out, nil
}

// intersect returns the pages in both a and b (both sorted, disjoint).
func intersect(a, b []extent) []extent {
	var out []extent
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].start, b[j].start), min(a[i].end, b[j].end)
		if lo < hi {
			out = append(out, extent{lo, hi})
		}
		if a[i].end < b[j].end {
			i++
		} else {
			j++
		}
	}
	return out
}

// clip splits accs into the parts that lie in data (sorted, disjoint) and
// the parts that lie in holes, cutting an access that straddles both.
func clip(accs []Access, data []extent) (inData, inHoles []Access) {
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
		i := sort.Search(len(data), func(i int) bool { return data[i].end > lo })
		for ; i < len(data) && data[i].start < hi; i++ {
			s, e := max(lo, data[i].start), min(hi, data[i].end)
			inHoles = piece(inHoles, a, lo, s)
			inData = piece(inData, a, s, e)
			lo = e
		}
		inHoles = piece(inHoles, a, lo, hi)
	}
	return inData, inHoles
}

// resident returns the runs of path's pages that are in the page cache.
func resident(path string) ([]extent, uint64, error) {
	vec, err := pagecache.Residency(path)
	if err != nil {
		return nil, 0, err
	}
	var runs []extent
	var n uint64
	for i, v := range vec {
		if v&1 == 0 {
			continue
		}
		n++
		p := uint64(i)
		if k := len(runs); k > 0 && runs[k-1].end == p {
			runs[k-1].end++
		} else {
			runs = append(runs, extent{p, p + 1})
		}
	}
	return runs, n, nil
}

// settledResident is resident once readahead I/O has finished: mincore
// counts a page only when its read has completed, so right after a run it
// can miss readahead still in flight.
func settledResident(path string) ([]extent, uint64, error) {
	runs, n, err := resident(path)
	for i := 0; err == nil && i < 40; i++ {
		time.Sleep(25 * time.Millisecond)
		var m uint64
		var again []extent
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
