package wset

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// writeFile writes size bytes of seeded random data to a new file in dir,
// leaving a hole of holeLen bytes at holeOff (holeLen 0: none), and syncs
// it so its cache can be dropped.
func writeFile(t *testing.T, dir string, seed uint64, size, holeOff, holeLen int64) string {
	t.Helper()
	path := filepath.Join(dir, "mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		r.Read(buf[:n])
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	if holeLen > 0 {
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, holeOff, holeLen); err != nil {
			t.Skipf("file system cannot punch holes: %v", err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path
}

// diskDir is a directory on a disk file system (not tmpfs), where O_DIRECT
// and the page cache behave as they do for a real memory file.
func diskDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "wset-test-")
	if err != nil {
		t.Skipf("no /var/tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func cached(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := pagecache.CachedIn(f, 0, 0)
	if err != nil {
		t.Skipf("no cachestat(2): %v", err)
	}
	return uint64(n)
}

func dropCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pagecache.Evict(f, 0, 0); err != nil {
		t.Fatal(err)
	}
}

func TestIdentifyFile(t *testing.T) {
	const size = 8<<20 + 100 // not page aligned: the last sample is short
	a := writeFile(t, diskDir(t), 1, size, 0, 0)
	dropCache(t, a)
	id, err := IdentifyFile(a, "snap-1")
	if err != nil {
		t.Fatal(err)
	}
	if id.Size != size || id.SnapshotID != "snap-1" || !strings.HasPrefix(id.Fingerprint, "s64:") {
		t.Fatalf("identity %+v", id)
	}
	if n := cached(t, a); n != 0 {
		t.Errorf("identifying a cold file left %d pages in its page cache", n)
	}
	again, err := IdentifyFile(a, "snap-1")
	if err != nil || again != id {
		t.Fatalf("identity not stable: %+v vs %+v (%v)", again, id, err)
	}

	// Other contents, same size: different fingerprint.
	b := writeFile(t, diskDir(t), 2, size, 0, 0)
	idB, err := IdentifyFile(b, "snap-1")
	if err != nil {
		t.Fatal(err)
	}
	if idB.Fingerprint == id.Fingerprint {
		t.Fatal("different contents, same fingerprint")
	}
}

// A hole reads as zeros, so a sparse copy matches a copy with the zeros
// written out: the fingerprint is about memory contents, not layout.
func TestIdentifySparseCopy(t *testing.T) {
	const size = 4 << 20
	sparse := writeFile(t, diskDir(t), 3, size, 0, 2<<20)
	dense := filepath.Join(diskDir(t), "dense")
	data, err := os.ReadFile(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dense, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := IdentifyFile(sparse, "")
	if err != nil {
		t.Fatal(err)
	}
	d, err := IdentifyFile(dense, "")
	if err != nil {
		t.Fatal(err)
	}
	if s != d {
		t.Fatalf("sparse %+v and dense %+v copies differ", s, d)
	}
}

func TestIdentifyTmpfsLeavesCacheAlone(t *testing.T) {
	// t.TempDir may be tmpfs, where O_DIRECT is refused and the buffered
	// fallback runs; on a disk it is the O_DIRECT path again.
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	before := cached(t, path)
	if _, err := IdentifyFile(path, ""); err != nil {
		t.Fatal(err)
	}
	if after := cached(t, path); after < before {
		t.Fatalf("identify dropped pages that were cached: %d -> %d", before, after)
	}
}

func TestIdentifyRefusesDirectory(t *testing.T) {
	if _, err := IdentifyFile(t.TempDir(), ""); err == nil {
		t.Fatal("a directory was identified")
	}
}

func TestCheck(t *testing.T) {
	rec := Identity{Size: 1 << 20, SnapshotID: "a", Fingerprint: "s64:1"}
	tests := []struct {
		name string
		id   Identity
		why  string
	}{
		{"same", rec, ""},
		{"no ID on the file", Identity{Size: 1 << 20, Fingerprint: "s64:1"}, ""},
		{"size", Identity{Size: 2 << 20, SnapshotID: "a", Fingerprint: "s64:1"}, "sizes differ"},
		{"snapshot", Identity{Size: 1 << 20, SnapshotID: "b", Fingerprint: "s64:1"}, "snapshot IDs differ"},
		{"contents", Identity{Size: 1 << 20, SnapshotID: "a", Fingerprint: "s64:2"}, "contents differ"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Set{Mem: rec}).Check(tc.id)
			if tc.why == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.why) ||
				!strings.Contains(err.Error(), rec.String()) || !strings.Contains(err.Error(), tc.id.String()) {
				t.Fatalf("error %q: want ErrMismatch, %q and both identities", err, tc.why)
			}
		})
	}
}

func TestCheckFile(t *testing.T) {
	dir := diskDir(t)
	path := writeFile(t, dir, 4, 1<<20, 0, 0)
	id, err := IdentifyFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{Mem: id}
	if err := s.CheckFile(path, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFile(path, ""); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), path) {
		t.Fatalf("grown file: %v", err)
	}
}

// The buffered fallback (tmpfs refuses O_DIRECT) must drop the samples it
// pulled in, and keep those that were cached already.
func TestReadSampleBufferedDropsWhatItRead(t *testing.T) {
	path := writeFile(t, diskDir(t), 5, 1<<20, 0, 0)
	dropCache(t, path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	buf := alignedBlock()
	for _, off := range []int64{0, 8 * pages.Size} { // 0 is where readahead starts a window
		if _, err := readSample(f, false, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if n := cached(t, path); n != 0 {
		t.Fatalf("cold sample left %d pages cached", n)
	}
	if _, err := f.ReadAt(buf, 0); err != nil { // warm page 0 on purpose
		t.Fatal(err)
	}
	if _, err := readSample(f, false, buf, 0); err != nil {
		t.Fatal(err)
	}
	if n := cached(t, path); n == 0 {
		t.Fatal("a sample that was cached before was dropped")
	}
}

// BenchmarkIdentifyFile: 64 O_DIRECT reads of 4 KiB and a hash; the file
// size does not matter.
func BenchmarkIdentifyFile(b *testing.B) {
	dir, err := os.MkdirTemp("/var/tmp", "wset-bench-")
	if err != nil {
		b.Skip(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mem")
	if err := os.WriteFile(path, make([]byte, 64<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := IdentifyFile(path, ""); err != nil {
			b.Fatal(err)
		}
	}
}
