package prefetch

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// memFile writes a file of size bytes of random data on the root disk
// (/var/tmp: a real block device, unlike a tmpfs /tmp), punches the given
// holes, syncs it and drops it from the page cache. It is removed when
// the test ends.
func memFile(tb testing.TB, size int64, holes ...request) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "prefetch-test-")
	if err != nil {
		tb.Skipf("no /var/tmp: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "mem")
	if err := writeRandom(path, size, holes); err != nil {
		tb.Fatal(err)
	}
	dropCache(tb, path)
	return path
}

func writeRandom(path string, size int64, holes []request) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{7})
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		r.Read(buf[:n])
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	for _, h := range holes {
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, h.off, h.len); err != nil {
			return err
		}
	}
	return f.Sync()
}

// dropCache makes the file cold: its clean, unmapped pages leave the page
// cache (POSIX_FADV_DONTNEED), without touching any other file. Pages whose
// read is still in flight (a cancelled run, another program's readahead)
// cannot be dropped yet, so it tries again for a while.
func dropCache(tb testing.TB, path string) {
	tb.Helper()
	var n int64
	for range 200 {
		var err error
		if n, err = pagecache.Drop(path); err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("%d pages still cached after DONTNEED", n)
}

// residency is one bool per page of a file: in the page cache and up to
// date (mincore).
type residency []bool

func (r residency) count() int {
	n := 0
	for _, b := range r {
		if b {
			n++
		}
	}
	return n
}

func residentPages(tb testing.TB, path string) residency {
	tb.Helper()
	vec, err := pagecache.Residency(path)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(residency, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

// randomSet picks n pages in k extents spread at random over a file of
// size bytes, in random (first-touch-like) order, disjoint.
func randomSet(seed uint64, size int64, nPages, extents int) []pages.Extent {
	r := rand.New(rand.NewPCG(seed, 1))
	var b wset.Builder
	filePages := uint64(size / pages.Size)
	per := max(1, nPages/extents)
	for b.Pages() < int64(nPages) {
		n := 1 + r.Uint64N(uint64(2*per-1))
		p := r.Uint64N(filePages - n)
		b.Add(p, n)
	}
	return b.Extents()
}
