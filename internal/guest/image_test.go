package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTestImage writes a small valid image into dir through writeImage.
func writeTestImage(t *testing.T, dir string, kernel, initramfs string) *Image {
	t.Helper()
	im := &Image{
		Kernel: kernelFile, Initramfs: initramfsFile, KernelVersion: testVersion,
		KernelSHA256: bytesSHA256([]byte(kernel)), InitramfsSHA256: bytesSHA256([]byte(initramfs)),
		AgentSHA256: bytesSHA256([]byte("agent")), Modules: []string{"virtio_ring"},
	}
	im.setDir(dir)
	if err := writeImage(dir, im, []byte(kernel), []byte(initramfs), ""); err != nil {
		t.Fatal(err)
	}
	return im
}

func TestWriteImageAndLoad(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "image")
	im := writeTestImage(t, dir, "kernel-1", "initramfs-1")
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.sameContent(im) || got.Kernel != filepath.Join(dir, kernelFile) || got.Dir != dir {
		t.Fatalf("Load = %+v, want %+v", got, im)
	}

	// Replacing swaps the whole directory and leaves no temporary behind.
	writeTestImage(t, dir, "kernel-2", "initramfs-2")
	got, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.KernelSHA256 != bytesSHA256([]byte("kernel-2")) {
		t.Fatal("second write did not replace the image")
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Fatalf("parent holds %d entries after replace, want only the image", len(ents))
	}
}

func TestWriteImageRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	im := &Image{Kernel: kernelFile, Initramfs: initramfsFile}
	im.setDir(dir)
	err := writeImage(dir, im, []byte("k"), []byte("i"), "")
	if err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("writeImage error = %v, want a refusal naming notes.txt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal("the foreign file is gone")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		want   string
	}{
		{"no image", func(t *testing.T, dir string) { os.RemoveAll(dir) }, "image.json does not exist"},
		{"kernel missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, kernelFile)) }, kernelFile + " is missing"},
		{"initramfs changed", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, initramfsFile), []byte("other"), 0o644)
		}, initramfsFile + " has sha256"},
		{"bad json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ImageFile), []byte("{"), 0o644)
		}, "parse"},
		{"path outside", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ImageFile), []byte(`{"kernel":"../vmlinuz","initramfs":"initramfs.cpio"}`), 0o644)
		}, "file names in the image directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "image")
			writeTestImage(t, dir, "kernel", "initramfs")
			tc.mutate(t, dir)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), rebuildHint) {
				t.Fatalf("Load error = %v, want one containing %q and %q", err, tc.want, rebuildHint)
			}
		})
	}
}
