package capture

import "github.com/snapbpf/snapbpf/internal/pages"

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
