package prefetch

import (
	"cmp"
	"fmt"
	"os"
	"slices"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// Plan orders extents by offset and merges those that overlap, touch, or
// are separated by at most gap pages: the device then sees a few large
// ascending requests instead of many small scattered ones, at the cost of
// reading the gaps.
func Plan(extents []pages.Extent, gap uint64) []pages.Extent {
	s := slices.Clone(extents)
	slices.SortFunc(s, func(a, b pages.Extent) int { return cmp.Compare(a.Page, b.Page) })
	out := s[:0]
	for _, e := range s {
		if e.N == 0 {
			continue
		}
		if k := len(out) - 1; k >= 0 && e.Page <= out[k].End()+gap {
			out[k].N = max(out[k].End(), e.End()) - out[k].Page
			continue
		}
		out = append(out, e)
	}
	return out
}

// byFirstTouch orders requests by the first touch of the pages they hold:
// extents is the working set in first-touch order, and a request goes as
// early as the earliest extent it overlaps. The requests stay large (they
// are the merged, ascending plan cut up); only the order they are issued
// in changes, so that a guest that starts before the prefetch has finished
// finds what it touches first already requested.
func byFirstTouch(reqs []request, extents []pages.Extent) []request {
	idx := make([]int, len(extents))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(extents[a].Page, extents[b].Page) })
	rank := make([]int, len(reqs))
	for i, r := range reqs {
		first, end := uint64(r.off)/pages.Size, uint64(r.end()+pages.Size-1)/pages.Size
		k, _ := slices.BinarySearchFunc(idx, first, func(j int, p uint64) int {
			// The first extent (by page) that ends after the request's first page.
			if extents[j].End() <= p {
				return -1
			}
			return 1
		})
		rank[i] = len(extents)
		for ; k < len(idx) && extents[idx[k]].Page < end; k++ {
			rank[i] = min(rank[i], idx[k])
		}
	}
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rank[a], rank[b]) })
	out := make([]request, len(reqs))
	for i, j := range order {
		out[i] = reqs[j]
	}
	return out
}

// request is one read of the file, in bytes.
type request struct {
	off, len int64
}

func (r request) end() int64 { return r.off + r.len }

// toRequests turns a plan into byte ranges inside the file's data: pages
// past the end of the file are dropped (the set was checked against the
// file; a shorter file is not an error here) and holes are cut out, since a
// hole needs no I/O and reading it would only fill the cache with zeroes.
// It returns the requests and the bytes of holes it left out.
func toRequests(f *os.File, plan []pages.Extent, size int64) ([]request, int64, error) {
	var reqs []request
	var planned, kept int64
	seg, err := pages.NewDataCursor(f)
	if err != nil {
		return nil, 0, err
	}
	filePages := pages.Count(size)
	for _, e := range plan {
		if e.Page >= filePages {
			break // plans are sorted: the rest is past the end too
		}
		endPage := filePages
		if e.N < filePages-e.Page { // compared this way so Page+N cannot wrap
			endPage = e.Page + e.N
		}
		planned += min(int64(endPage)*pages.Size, size) - int64(e.Page)*pages.Size
		for p := e.Page; p < endPage; {
			d, err := seg.Next(p)
			if err != nil {
				return nil, 0, fmt.Errorf("find data in %s: %w", f.Name(), err)
			}
			if d.N == 0 || d.Page >= endPage {
				break
			}
			hi := min(d.End(), endPage)
			off := int64(d.Page) * pages.Size
			r := request{off: off, len: min(int64(hi)*pages.Size, size) - off}
			kept += r.len
			reqs = appendMerged(reqs, r)
			p = hi
		}
	}
	return reqs, planned - kept, nil
}

// pageRequests turns a plan into byte ranges as they are, cut at the end of
// the file.
func pageRequests(plan []pages.Extent, size int64) []request {
	var reqs []request
	for _, e := range plan {
		off := int64(e.Page) * pages.Size
		if off >= size {
			break // plans are sorted: the rest is past the end too
		}
		reqs = append(reqs, request{off: off, len: min(int64(e.End())*pages.Size, size) - off})
	}
	return reqs
}

func appendMerged(reqs []request, r request) []request {
	if k := len(reqs) - 1; k >= 0 && reqs[k].end() == r.off {
		reqs[k].len += r.len
		return reqs
	}
	return append(reqs, r)
}

// split cuts requests longer than max bytes, so no request exceeds what
// one readahead call will read and large extents are spread over workers.
func split(reqs []request, maxLen int64) []request {
	out := make([]request, 0, len(reqs))
	for _, r := range reqs {
		for r.len > maxLen {
			out = append(out, request{r.off, maxLen})
			r.off, r.len = r.off+maxLen, r.len-maxLen
		}
		out = append(out, r)
	}
	return out
}
