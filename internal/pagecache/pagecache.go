// Package pagecache inspects and controls which pages of a file are in the
// host's page cache: the state every restore policy starts from and works
// on.
package pagecache

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// Residency returns mincore's vector for the whole file: bit 0 of byte i
// says whether page i is cached. It maps the file read-only and shared,
// which shows residency without faulting anything in, and in chunks, so a
// large file needs no large mapping.
func Residency(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("page cache of %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("page cache of %s: %w", path, err)
	}
	vec := make([]byte, (st.Size()+pages.Size-1)/pages.Size)
	const chunk = 1 << 30
	for off := int64(0); off < st.Size(); off += chunk {
		n := min(chunk, st.Size()-off)
		m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("page cache of %s: mmap: %w", path, err)
		}
		err = mincore(m, vec[off/pages.Size:(off+n+pages.Size-1)/pages.Size])
		unix.Munmap(m)
		if err != nil {
			return nil, fmt.Errorf("page cache of %s: mincore: %w", path, err)
		}
	}
	return vec, nil
}

// Cached counts the file's pages in the page cache.
func Cached(path string) (int64, error) {
	vec, err := Residency(path)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, b := range vec {
		n += int64(b & 1)
	}
	return n, nil
}

// Drop writes back and evicts the file's cached pages that no process
// maps (POSIX_FADV_DONTNEED): a cold start for one file without
// drop_caches. It returns how many pages stayed cached.
func Drop(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("drop cache: %w", err)
	}
	defer f.Close()
	// DONTNEED skips dirty pages and only starts writeback: sync first.
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return 0, fmt.Errorf("drop cache of %s: fdatasync: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return 0, fmt.Errorf("drop cache of %s: %w", path, err)
	}
	return Cached(path)
}

// Warm reads the whole file into the page cache (holes cost no I/O).
func Warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("warm cache: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("warm cache of %s: %w", path, err)
		}
	}
}

// mincore wraps mincore(2), which golang.org/x/sys/unix does not offer.
func mincore(m, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}
