// Package pagecache inspects and controls which pages of a file are in the
// host's page cache: the state every restore policy starts from and works
// on. It owns residency (mincore, cachestat) and eviction (fadvise
// DONTNEED); prefetching into the cache is internal/prefetch's job.
package pagecache

import (
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// Residency returns mincore's vector for the whole file: bit 0 of byte i
// says whether page i is cached and its read has completed. It maps the
// file read-only and shared, which shows residency without faulting
// anything in, and in chunks, so a large file needs no large mapping.
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
	vec := make([]byte, pages.Count(st.Size()))
	const chunk = 1 << 30
	for off := int64(0); off < st.Size(); off += chunk {
		m, err := Map(f, off, min(chunk, st.Size()-off))
		if err != nil {
			return nil, err
		}
		err = m.Residency(vec[off/pages.Size:])
		m.Close()
		if err != nil {
			return nil, err
		}
	}
	return vec, nil
}

// A Mapping is a read-only shared mapping of part of a file, kept to ask
// mincore about it again and again without faulting anything in.
type Mapping struct {
	name string
	m    []byte
}

// Map maps n bytes of f from off (page-aligned) for residency questions.
func Map(f *os.File, off, n int64) (*Mapping, error) {
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("page cache of %s: mmap: %w", f.Name(), err)
	}
	return &Mapping{name: f.Name(), m: m}, nil
}

// Pages is how many pages the mapping covers: the length Residency fills.
func (m *Mapping) Pages() int { return int(pages.Count(int64(len(m.m)))) }

// Residency fills vec[:m.Pages()] with mincore's answer: bit 0 of byte i
// says whether page i of the mapping is cached and up to date.
func (m *Mapping) Residency(vec []byte) error {
	if len(m.m) == 0 {
		return nil
	}
	if len(vec) < m.Pages() {
		return fmt.Errorf("page cache of %s: vector of %d for %d pages", m.name, len(vec), m.Pages())
	}
	if err := mincore(m.m, vec); err != nil {
		return fmt.Errorf("page cache of %s: mincore: %w", m.name, err)
	}
	return nil
}

// Close unmaps the mapping.
func (m *Mapping) Close() error { return unix.Munmap(m.m) }

// Resident returns the runs of the file's pages in the page cache and how
// many pages they hold.
func Resident(path string) ([]pages.Extent, uint64, error) {
	vec, err := Residency(path)
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

// SettledResident is Resident once readahead I/O has finished: mincore
// counts a page only when its read has completed, so right after a run it
// can miss readahead still in flight. It waits up to a second for the
// count to stop changing.
func SettledResident(path string) ([]pages.Extent, uint64, error) {
	runs, n, err := Resident(path)
	for i := 0; err == nil && i < 40; i++ {
		time.Sleep(25 * time.Millisecond)
		var m uint64
		var again []pages.Extent
		again, m, err = Resident(path)
		if m == n {
			break
		}
		runs, n = again, m
	}
	return runs, n, err
}

// CachedIn counts the pages of [off, off+n) of f in the page cache, their
// reads completed or not (cachestat(2); n 0 means to the end of the file).
// Kernels before 6.5 have no cachestat: the error says so (ENOSYS).
func CachedIn(f *os.File, off, n int64) (int64, error) {
	var cs unix.Cachestat_t
	r := unix.CachestatRange{Off: uint64(off), Len: uint64(n)}
	if err := unix.Cachestat(uint(f.Fd()), &r, &cs, 0); err != nil {
		return 0, fmt.Errorf("page cache of %s: cachestat: %w", f.Name(), err)
	}
	return int64(cs.Cache), nil
}

// Evict drops the clean pages of [off, off+n) of f (n 0: to the end) that
// no process maps from the page cache (POSIX_FADV_DONTNEED). Dirty pages
// stay: write them back first for a cold start.
func Evict(f *os.File, off, n int64) error {
	if err := unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop cache of %s: %w", f.Name(), err)
	}
	return nil
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
	if err := Evict(f, 0, 0); err != nil {
		return 0, err
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
