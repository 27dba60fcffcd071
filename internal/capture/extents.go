package capture

import "github.com/snapbpf/snapbpf/internal/pages"

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

// countPages is the number of pages accs cover, repeats included.
func countPages(accs []Access) uint64 {
	var n uint64
	for _, a := range accs {
		n += uint64(a.NPages)
	}
	return n
}
