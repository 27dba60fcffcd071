package majfault

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
)

const page = 4096

// coldMapping writes a file of n pages on disk, drops it from the page
// cache and maps it with MADV_RANDOM, so that each first touch of a page
// is one major fault that reads that page alone.
func coldMapping(t *testing.T, dir, name string, n int) []byte {
	t.Helper()
	path := filepath.Join(dir, name)
	buf := make([]byte, n*page)
	for i := range buf {
		buf[i] = byte(i/page + 1)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, n*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	return m
}

// threadMajor is the calling thread's count of major faults.
func threadMajor(t *testing.T) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Majflt
}

func touch(m []byte, pages ...int) {
	for _, p := range pages {
		atomic.LoadUint32((*uint32)(unsafe.Pointer(&m[p*page])))
	}
}

// TestCountsByRange: this process takes K major faults in one cold
// mapping and M in another; the counter attributes exactly K to the first
// mapping's range and at least M to the rest.
func TestCountsByRange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: perf events with BPF need CAP_PERFMON and CAP_BPF")
	}
	dir, err := os.MkdirTemp("/var/tmp", "majfault-test-")
	if err != nil {
		t.Skipf("no /var/tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	in := coldMapping(t, dir, "in", 256)
	out := coldMapping(t, dir, "out", 256)
	start := uint64(uintptr(unsafe.Pointer(&in[0])))
	c, err := Start(os.Getpid(), start, start+uint64(len(in)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The thread's own count of major faults is the truth to match: a
	// page the host still had cached (seen once in CI) faults minor.
	runtime.LockOSThread()
	m0 := threadMajor(t)
	touch(in, 3, 10, 11, 100, 255, 3) // 5 pages; the last touch is no fault
	m1 := threadMajor(t)
	touch(out, 0, 50, 51)
	m2 := threadMajor(t)
	runtime.UnlockOSThread()
	inside, outside, err := c.Counts()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inside %d, outside %d; the thread counted %d and %d", inside, outside, m1-m0, m2-m1)
	if m1-m0 < 3 {
		t.Fatalf("only %d of 5 touches of the cold mapping were major faults: the file was not cold", m1-m0)
	}
	if inside != m1-m0 {
		t.Errorf("inside = %d major faults, the thread took %d there", inside, m1-m0)
	}
	if outside < m2-m1 {
		t.Errorf("outside = %d major faults, the thread took %d there", outside, m2-m1)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"0", []int{0}, true},
		{"0-1", []int{0, 1}, true},
		{"0-2,4,6-7", []int{0, 1, 2, 4, 6, 7}, true},
		{"", nil, false},
		{"3-1", nil, false},
		{"a", nil, false},
	} {
		got, err := parseCPUList(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
