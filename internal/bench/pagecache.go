package bench

import (
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
)

// CachedBytes is how much of the file at path is in the page cache now.
func CachedBytes(path string) (int64, error) {
	n, err := pagecache.Cached(path)
	return n * pages.Size, err
}

// cachedIn is how many bytes of the page-aligned ranges reqs of the file
// at path are in the page cache now.
func cachedIn(path string, reqs []prefetch.Request) (int64, error) {
	vec, err := pagecache.Residency(path)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range reqs {
		for p := r.Off / pages.Size; p < (r.Off+r.Len+pages.Size-1)/pages.Size && p < int64(len(vec)); p++ {
			n += int64(vec[p] & 1)
		}
	}
	return n * pages.Size, nil
}
