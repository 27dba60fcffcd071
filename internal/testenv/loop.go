package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Loop attaches a fresh sparse 64 MiB file as a loop device, detached at
// t's cleanup, and returns the device and its sysfs queue directory: a
// disk of its own whose read_ahead_kb a test may change without touching
// the disks other processes use. It skips t without root or losetup.
func Loop(t testing.TB) (dev, queue string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: attaches a loop device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("needs losetup (util-linux)")
	}
	backing := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: losetup: %v: %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev, filepath.Join("/sys/block", filepath.Base(dev), "queue")
}

// LoopFS makes an ext4 filesystem on a Loop device and mounts it on a
// temporary directory, unmounted at t's cleanup, and returns the mount
// point and the device's queue directory.
func LoopFS(t testing.TB) (dir, queue string) {
	t.Helper()
	dev, queue := Loop(t)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4 %s: %v: %s", dev, err, out)
	}
	dir = t.TempDir()
	if out, err := exec.Command("mount", dev, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", dev, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, queue
}
