package kmod

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadOrder(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
		wantErr string
	}{
		{name: "plain", content: "virtio_ring\nvirtio\nvirtio_mmio\n", want: []string{"virtio_ring", "virtio", "virtio_mmio"}},
		{name: "blank and comments", content: "# order\n\nvirtio_ring\n  virtio  \n\n", want: []string{"virtio_ring", "virtio"}},
		{name: "no final newline", content: "virtio_balloon", want: []string{"virtio_balloon"}},
		{name: "empty", content: "", want: nil},
		{name: "path", content: "../evil\n", wantErr: "bad module name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "modules")
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadOrder(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadOrder error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ReadOrder = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadOrderMissing(t *testing.T) {
	_, err := ReadOrder(filepath.Join(t.TempDir(), "nope"))
	if err == nil {
		t.Fatal("ReadOrder on a missing file succeeded")
	}
}

// Loading real modules needs the guest kernel; internal/guest's boot test
// does that. Here: errors must name the module, and nothing is loaded.
func TestLoadAllNamesModule(t *testing.T) {
	dir := t.TempDir()
	err := LoadAll(dir, []string{"snapbpf_no_such_module"})
	if err == nil || !strings.Contains(err.Error(), "snapbpf_no_such_module") {
		t.Fatalf("LoadAll error = %v, want one naming the module", err)
	}
}

func TestLoadAllRejectsNonModule(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: finit_module checks CAP_SYS_MODULE before reading the file")
	}
	dir := t.TempDir()
	// Not an ELF module: the kernel must refuse it, and LoadAll must say which.
	if err := os.WriteFile(filepath.Join(dir, "junk.ko"), []byte("not a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := LoadAll(dir, []string{"junk"})
	if err == nil || !strings.Contains(err.Error(), "junk") {
		t.Fatalf("LoadAll error = %v, want one naming the module", err)
	}
}
