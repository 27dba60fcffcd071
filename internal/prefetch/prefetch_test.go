package prefetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
	"golang.org/x/sys/unix"
)

func openT(tb testing.TB, path string) *os.File {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// TestEnginesMakeExactlyTheSetResident runs every engine on a cold 256 MiB
// file with holes and checks residency page by page: all working-set data
// pages resident, hole pages not, and nothing beyond the set and the gaps
// merging chose to read.
func TestEnginesMakeExactlyTheSetResident(t *testing.T) {
	const size = 256 << 20
	const P = pages.Size
	holes := []request{{10 << 20, 4 << 20}, {100 << 20, 64 << 10}}
	path := memFile(t, size, holes...)
	ext := randomSet(1, size, 8000, 800)
	// A working set can hold hole pages (the guest read a free page):
	// they must be skipped, not read.
	ext = append(ext, pages.Extent{Page: (10 << 20) / P, N: 100}, pages.Extent{Page: (100<<20)/P - 2, N: 20})
	var b wset.Builder
	for _, e := range ext {
		b.Add(e.Page, e.N)
	}
	ext = b.Extents()

	for _, name := range Engines() {
		for _, gap := range []int{-1, 8} {
			t.Run(fmt.Sprintf("%s/gap%d", name, gap), func(t *testing.T) {
				dropCache(t, path)
				st, err := Prefetch(context.Background(), path, ext, Options{Engine: name, GapPages: gap})
				if err != nil {
					t.Fatal(err)
				}
				res := residentPages(t, path)
				inHole := func(p uint64) bool {
					for _, h := range holes {
						if int64(p)*P >= h.off && int64(p)*P < h.end() {
							return true
						}
					}
					return false
				}
				want := 0
				for _, e := range ext {
					for p := e.Page; p < e.End(); p++ {
						switch {
						case inHole(p) && res[p]:
							t.Fatalf("hole page %d was read", p)
						case !inHole(p) && !res[p]:
							t.Fatalf("working-set page %d not resident", p)
						case !inHole(p):
							want++
						}
					}
				}
				got := res.count()
				if int64(got)*P != st.Bytes {
					t.Errorf("%d pages resident, stats say %d bytes read", got, st.Bytes)
				}
				if gap < 0 && got != want {
					t.Errorf("%d pages resident, want exactly the %d working-set data pages", got, want)
				}
				if int64(got-want)*P != st.GapBytes {
					t.Errorf("%d extra pages resident, stats say %d gap bytes", got-want, st.GapBytes)
				}
				if st.HoleBytesSkipped < 120*P || st.CompleteDur < st.IssueDur || st.Requests == 0 {
					t.Errorf("stats %+v", st)
				}
				t.Logf("gap %d: %+v", gap, st)
			})
		}
	}
}

// One call of readahead reads at most the device's readahead size: a long
// extent must still come in whole.
func TestLongExtentComesInWhole(t *testing.T) {
	const size = 64 << 20
	path := memFile(t, size)
	for _, name := range Engines() {
		t.Run(name, func(t *testing.T) {
			dropCache(t, path)
			if _, err := Prefetch(context.Background(), path, []pages.Extent{{Page: 0, N: size / pages.Size}}, Options{Engine: name}); err != nil {
				t.Fatal(err)
			}
			// A request cut short by one readahead call would leave most of
			// the 64 MiB out; the host's DAMON pageout evicts a few freshly
			// read pages now and then (seen: 22 of 16384 under pread), which
			// the 1% allows.
			if n, all := residentPages(t, path).count(), size/pages.Size; n < all-all/100 {
				t.Fatalf("%d of %d pages resident", n, all)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	const size = 256 << 20
	path := memFile(t, size)
	// Every other page: many small requests that cannot merge.
	var ext []pages.Extent
	for p := uint64(0); p < size/pages.Size; p += 2 {
		ext = append(ext, pages.Extent{Page: p, N: 1})
	}
	for _, name := range Engines() {
		t.Run(name, func(t *testing.T) {
			dropCache(t, path)
			ctx, cancel := context.WithCancel(context.Background())
			j, err := Start(ctx, path, ext, Options{Engine: name, GapPages: -1, Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			cancel()
			st, err := j.Wait()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait after cancel: %v (stats %+v)", err, st)
			}
			if n := residentPages(t, path).count(); n >= len(ext) {
				t.Fatalf("all %d pages resident despite the cancel", n)
			}
			select {
			case <-j.Issued():
			default:
				t.Fatal("Issued not closed after the job ended")
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), "/nonexistent/mem", nil, Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := memFile(t, pages.Size)
	if _, err := Start(context.Background(), path, nil, Options{Engine: "telepathy"}); err == nil {
		t.Fatal("unknown engine accepted")
	}
	st, err := Prefetch(context.Background(), path, nil, Options{})
	if err != nil || st.Bytes != 0 {
		t.Fatalf("empty set: %+v %v", st, err)
	}
}

// The wait for engines that do not observe completion must also bring in
// pages whose readahead never happened (the kernel gives up on readahead
// under memory pressure).
func TestWaitResidentRepairsSkippedReadahead(t *testing.T) {
	const size = 16 << 20
	path := memFile(t, size)
	f := openT(t, path)
	reqs := []request{{0, 1 << 20}, {4 << 20, 2 << 20}, {size - pages.Size, pages.Size}}
	h, err := holdResident(context.Background(), f, size, reqs)
	if err != nil {
		t.Fatal(err)
	}
	h.release()
	res := residentPages(t, path)
	want := 0
	for _, r := range reqs {
		for p := r.off / pages.Size; p < r.end()/pages.Size; p++ {
			if !res[p] {
				t.Fatalf("page %d not resident", p)
			}
			want++
		}
	}
	if got := res.count(); got != want {
		t.Fatalf("%d pages resident, want %d", got, want)
	}
}

// TestZeroFillsTouchedHoles checks Options.Zero with every engine: the
// touched hole pages become resident, the data pages as before, no other
// hole page, and the file gains no blocks (nothing was written or
// allocated: a hole is filled with zeroes in the page cache only).
func TestZeroFillsTouchedHoles(t *testing.T) {
	const size = 64 << 20
	const P = pages.Size
	hole := request{16 << 20, 8 << 20}
	path := memFile(t, size, hole)
	blocks := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Blocks
	}
	before := blocks()
	data := []pages.Extent{{Page: 10, N: 5}, {Page: 9000, N: 3}}
	zero := []pages.Extent{{Page: (16 << 20) / P, N: 300}, {Page: (20 << 20) / P, N: 1}}
	for _, name := range Engines() {
		t.Run(name, func(t *testing.T) {
			dropCache(t, path)
			st, err := Prefetch(context.Background(), path, data, Options{Engine: name, GapPages: -1, Zero: zero})
			if err != nil {
				t.Fatal(err)
			}
			res := residentPages(t, path)
			for _, e := range append(slices.Clone(data), zero...) {
				for p := e.Page; p < e.End(); p++ {
					if !res[p] {
						t.Fatalf("page %d not resident", p)
					}
				}
			}
			if got := res.count(); got != 8+301 {
				t.Errorf("%d pages resident, want the 8 data and 301 zero pages", got)
			}
			if st.Bytes != 8*P || st.ZeroBytes != 301*P {
				t.Errorf("stats: %d bytes read, %d zero-filled; want %d and %d", st.Bytes, st.ZeroBytes, 8*P, 301*P)
			}
			if b := blocks(); b != before {
				t.Errorf("file blocks %d -> %d: zero fill allocated storage", before, b)
			}
		})
	}
}

// TestTouchPages: the wait's fallback for kernels without
// MADV_POPULATE_READ brings exactly the touched range in, as the madvise
// does (the mapping advised random, as holdResident advises it).
func TestTouchPages(t *testing.T) {
	const size = 8 << 20
	path := memFile(t, size)
	f := openT(t, path)
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	const off, n = 1 << 20, 64
	if err := touchPages(m[off : off+n*pages.Size]); err != nil {
		t.Fatal(err)
	}
	res := residentPages(t, path)
	for p := off / pages.Size; p < off/pages.Size+n; p++ {
		if !res[p] {
			t.Fatalf("page %d not resident", p)
		}
	}
	if got := res.count(); got != n {
		t.Fatalf("%d pages resident, want %d", got, n)
	}
}

// TestHeldUntilWait checks, with every engine, that the job keeps the
// pages it brought in mapped from completion until Wait: dropping the
// file's unmapped page cache (POSIX_FADV_DONTNEED, as reclaim of unmapped
// page cache such as the host's DAMON pageout would) leaves the working
// set resident while the job holds it, and takes it once Wait let go.
func TestHeldUntilWait(t *testing.T) {
	const size = 32 << 20
	path := memFile(t, size)
	ext := randomSet(3, size, 1000, 200)
	var want int
	for _, e := range ext {
		want += int(e.N)
	}
	for _, name := range Engines() {
		t.Run(name, func(t *testing.T) {
			dropCache(t, path)
			j, err := Start(context.Background(), path, ext, Options{Engine: name, GapPages: -1})
			if err != nil {
				t.Fatal(err)
			}
			<-j.Done()
			if _, err := pagecache.Drop(path); err != nil {
				t.Fatal(err)
			}
			res := residentPages(t, path)
			for _, e := range ext {
				for p := e.Page; p < e.End(); p++ {
					if !res[p] {
						t.Fatalf("page %d of the working set dropped before Wait: the job does not hold its pages", p)
					}
				}
			}
			if _, err := j.Wait(); err != nil {
				t.Fatal(err)
			}
			if _, err := j.Wait(); err != nil {
				t.Fatalf("second Wait: %v", err)
			}
			if _, err := pagecache.Drop(path); err != nil {
				t.Fatal(err)
			}
			if n := residentPages(t, path).count(); n != 0 {
				t.Fatalf("%d of the %d pages still cached after Wait and a drop: Wait did not let go of them", n, want)
			}
		})
	}
}
