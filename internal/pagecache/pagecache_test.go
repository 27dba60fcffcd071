package pagecache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestDropWarmCached(t *testing.T) {
	// tmpfs pages cannot be dropped: use the disk.
	dir, err := os.MkdirTemp("/var/tmp", "pagecache-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f")
	const nPages = 256
	if err := os.WriteFile(path, make([]byte, nPages*pages.Size), 0o644); err != nil {
		t.Fatal(err)
	}
	left, err := Drop(path)
	if err != nil {
		t.Fatal(err)
	}
	if left > nPages/10 {
		t.Fatalf("after Drop %d of %d pages still cached", left, nPages)
	}
	if err := Warm(path); err != nil {
		t.Fatal(err)
	}
	n, err := Cached(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != nPages {
		t.Fatalf("after Warm %d of %d pages cached", n, nPages)
	}
	vec, err := Residency(path)
	if err != nil || len(vec) != nPages {
		t.Fatalf("Residency: %d entries, %v", len(vec), err)
	}
	if _, err := Drop(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Drop of a missing file succeeded")
	}
}
