package bench

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CachedBytes is how much of the file at path is in the page cache now.
func CachedBytes(path string) (int64, error) {
	vec, err := residency(path)
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
func cachedIn(path string, reqs []fioRequest) (int64, error) {
	vec, err := residency(path)
	if err != nil {
		return 0, err
	}
	page := int64(os.Getpagesize())
	var n int64
	for _, r := range reqs {
		for p := r.off / page; p < (r.off+r.len+page-1)/page && p < int64(len(vec)); p++ {
			n += int64(vec[p] & 1)
		}
	}
	return n * page, nil
}

// residency returns mincore's vector for the whole file: bit 0 of each
// byte says whether that page is cached. It uses a read-only shared
// mapping, which shows residency without faulting anything in.
func residency(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("page cache of %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("page cache of %s: %w", path, err)
	}
	page := int64(os.Getpagesize())
	vec := make([]byte, (st.Size()+page-1)/page)
	// Map in chunks so a large file needs no large mapping at once.
	const chunk = 1 << 30
	for off := int64(0); off < st.Size(); off += chunk {
		n := min(chunk, st.Size()-off)
		m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("page cache of %s: mmap: %w", path, err)
		}
		err = mincore(m, vec[off/page:(off+n+page-1)/page])
		unix.Munmap(m)
		if err != nil {
			return nil, fmt.Errorf("page cache of %s: mincore: %w", path, err)
		}
	}
	return vec, nil
}

// mincore wraps mincore(2), which golang.org/x/sys/unix does not.
func mincore(m, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}
