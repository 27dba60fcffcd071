package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/rootfs/layout"
)

// mountRootfs mounts a runtime image, when the VM has one, read-only on
// layout.GuestMount, with /proc, /sys, /dev and /tmp inside it for the
// runner, which runs chrooted there. It reports false when there is no
// image disk.
func mountRootfs() (bool, error) {
	// The disk node appears once virtio_blk has probed the device; that
	// happened during module loading, devtmpfs may lag a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := os.Stat(layout.GuestDevice); err == nil {
			break
		}
		if _, err := os.Stat("/sys/module/virtio_blk"); err != nil || time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	root := layout.GuestMount
	if err := os.MkdirAll(root, 0o755); err != nil {
		return false, err
	}
	if err := unix.Mount(layout.GuestDevice, root, "erofs", unix.MS_RDONLY, ""); err != nil {
		return false, fmt.Errorf("mount %s (erofs) on %s: %w", layout.GuestDevice, root, err)
	}
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "proc", "proc"},
		{"sysfs", "sys", "sysfs"},
		{"devtmpfs", "dev", "devtmpfs"},
		{"tmpfs", "tmp", "tmpfs"},
	} {
		dir := filepath.Join(root, m.dir)
		if err := unix.Mount(m.src, dir, m.fstype, 0, ""); err != nil {
			return false, fmt.Errorf("mount %s on %s: %w", m.fstype, dir, err)
		}
	}
	return true, nil
}

// RuntimeCommand implements agent.Runtimes: the runner of the runtime
// image, chrooted into it.
func (linuxSystem) RuntimeCommand(name string) (*exec.Cmd, error) {
	// Every Python runtime's image has the same runner; the image decides
	// which packages it can import.
	if name != "python" && !strings.HasPrefix(name, "python-") {
		return nil, fmt.Errorf("runtime %q: this agent starts only Python runtimes (python, python-*)", name)
	}
	if _, err := os.Stat(filepath.Join(layout.GuestMount, layout.RunnerPath)); err != nil {
		return nil, fmt.Errorf("runtime %s: no runner in the guest (%w): boot an image built with snapbpf image build --runtime %s", name, err, name)
	}
	cmd := exec.Command(layout.Python, layout.RunnerPath)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: layout.GuestMount}
	return cmd, nil
}
