package bench

import (
	"os"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/prefetch"
)

// CachedBytes is how much of the file at path is in the page cache now.
func CachedBytes(path string) (int64, error) {
	vec, err := pagecache.Residency(path)
	if err != nil {
		return 0, err
	}
	var pages int64
	for _, b := range vec {
		pages += int64(b & 1)
	}
	return pages * int64(os.Getpagesize()), nil
}

// cachedIn is how many bytes of the page-aligned ranges reqs of the file
// at path are in the page cache now.
func cachedIn(path string, reqs []prefetch.Request) (int64, error) {
	vec, err := pagecache.Residency(path)
	if err != nil {
		return 0, err
	}
	page := int64(os.Getpagesize())
	var n int64
	for _, r := range reqs {
		for p := r.Off / page; p < (r.Off+r.Len+page-1)/page && p < int64(len(vec)); p++ {
			n += int64(vec[p] & 1)
		}
	}
	return n * page, nil
}
