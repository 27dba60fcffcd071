package bench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestCachedBytes checks CachedBytes against a real file on disk: empty
// after the cache is dropped, then exactly the part read.
func TestCachedBytes(t *testing.T) {
	const size = 4 << 20
	path := testenv.DiskFile(t, make([]byte, size))
	dir := filepath.Dir(path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	}
	got, err := CachedBytes(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != 0 {
		t.Skipf("the file stays cached after FADV_DONTNEED (%d bytes; tmpfs?)", got)
	}
	// Read 64 KiB from 1 MiB on, with readahead off so only that is cached.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	got, err = CachedBytes(path)
	if err != nil {
		t.Fatal(err)
	}
	if got < 64<<10 || got >= size {
		t.Errorf("CachedBytes after reading 64 KiB of 4 MiB = %d", got)
	}
	in, err := cachedIn(path, []prefetch.Request{{Off: 1 << 20, Len: 64 << 10}, {Off: 2 << 20, Len: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	if in != 64<<10 {
		t.Errorf("cachedIn over the range read and one not read = %d, want %d", in, 64<<10)
	}
	empty := dir + "/empty"
	os.WriteFile(empty, nil, 0o644)
	if got, err := CachedBytes(empty); err != nil || got != 0 {
		t.Errorf("CachedBytes(empty) = %d, %v", got, err)
	}
	if _, err := CachedBytes(dir + "/missing"); err == nil {
		t.Error("CachedBytes of a missing file did not fail")
	}
}
