package record

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
)

// TestColdCopy: the private copy holds the file's bytes at the same
// offsets, keeps its holes (same allocated blocks), is out of the page
// cache, and vanishes when closed.
func TestColdCopy(t *testing.T) {
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	const size = 64 << 20
	f, err := os.Create(mem)
	if err != nil {
		t.Fatal(err)
	}
	// Data at the start, in the middle and at the end; holes between.
	chunk := make([]byte, 3<<20)
	rand.Read(chunk)
	for _, off := range []int64{0, 20 << 20, size - int64(len(chunk))} {
		if _, err := f.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	c, err := newColdCopy(mem, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("copied %d MiB of data in %v", c.DataBytes>>20, c.Took)
	if c.DataBytes != 3*int64(len(chunk)) {
		t.Errorf("copied %d bytes of data, want %d", c.DataBytes, 3*len(chunk))
	}
	var src, dst unix.Stat_t
	if err := unix.Stat(mem, &src); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(c.Path, &dst); err != nil {
		t.Fatal(err)
	}
	if dst.Size != src.Size || dst.Blocks != src.Blocks || dst.Ino == src.Ino {
		t.Errorf("copy: size %d, %d blocks, inode %d; file: size %d, %d blocks, inode %d", dst.Size, dst.Blocks, dst.Ino, src.Size, src.Blocks, src.Ino)
	}
	if n, err := pagecache.Cached(c.Path); err != nil || n != 0 {
		t.Errorf("copy has %d pages cached (%v), want 0: not cold", n, err)
	}
	want, _ := os.ReadFile(mem)
	got, err := os.ReadFile(c.Path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("copy differs from the file (%v)", err)
	}
	entries, _ := os.ReadDir(dir)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the copy left a name in %s: %v", dir, entries)
	}
	if _, err := os.Open(c.Path); err == nil {
		t.Errorf("%s still opens after Close", c.Path)
	}
}
