package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// DiskFile writes data to a new file in a directory of its own on the root
// disk (/var/tmp: tmpfs has no readahead and keeps every page cached),
// synced so that its pages can be dropped from the page cache, and
// removes it when t ends. It skips t where /var/tmp is not writable.
func DiskFile(t testing.TB, data []byte) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "snapbpf-test-")
	if err != nil {
		t.Skipf("needs a disk-backed directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path
}
