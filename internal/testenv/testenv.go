// Package testenv gives tests that run real guests what they need: root,
// QEMU, and a guest image built once per test binary from this module's
// agent.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

var (
	mu    sync.Mutex
	root  string
	once  sync.Once
	image *guest.Image
	err   error

	pyOnce  sync.Once
	pyImage *guest.Image
	pyErr   error
)

// Dir is a directory for a test binary's shared data (image, snapshots),
// removed by Cleanup.
func Dir() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if root == "" {
		d, err := os.MkdirTemp("", "snapbpf-test-")
		if err != nil {
			return "", err
		}
		root = d
	}
	return root, nil
}

// Cleanup removes Dir; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if root != "" {
		os.RemoveAll(root)
		root = ""
	}
}

// Run runs m's tests, removes Dir and exits with their status: the end of
// the TestMain of a package whose tests use Dir (os.Exit skips deferred
// calls, so Cleanup cannot be deferred there).
func Run(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// NeedVM skips t without root or under -short (make unit), fails it
// without QEMU, and returns the guest image, built on first use (the kernel
// package is cached in guest.DefaultCacheDir across runs).
func NeedVM(t testing.TB) *guest.Image {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skips tests that boot guests (make test runs them)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds a guest image, runs QEMU VMs and loads eBPF programs")
	}
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Fatalf("%s not installed (apt-get install qemu-system-x86): %v", qemu.DefaultBinary, err)
	}
	once.Do(func() { image, err = build() })
	if err != nil {
		t.Fatal(err)
	}
	return image
}

func build() (*guest.Image, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	agent := filepath.Join(dir, "snapbpf-agent")
	cmd := exec.Command("go", "build", "-o", agent, "github.com/snapbpf/snapbpf/cmd/snapbpf-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build agent: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return guest.Build(ctx, guest.BuildOptions{OutDir: filepath.Join(dir, "image"), AgentPath: agent})
}

// NeedRoot skips t without root or under -short (make unit): what it does
// needs privileges (BPF, mounts, dropping caches, sysfs) or takes long.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skips tests that need root (make test runs them): " + why)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
}

// NeedPython is NeedVM for the python runtime: the guest image with the
// python root filesystem. The root filesystem is built once per machine
// (cached in guest.DefaultCacheDir; a cold build takes minutes), the image
// once per test binary.
func NeedPython(t testing.TB) *guest.Image {
	t.Helper()
	base := NeedVM(t)
	pyOnce.Do(func() { pyImage, pyErr = buildPython(base) })
	if pyErr != nil {
		t.Fatal(pyErr)
	}
	return pyImage
}

func buildPython(base *guest.Image) (*guest.Image, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rt, err := rootfs.Lookup("python")
	if err != nil {
		return nil, err
	}
	fs, err := rootfs.Build(ctx, rt, rootfs.Options{})
	if err != nil {
		return nil, err
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	return guest.Build(ctx, guest.BuildOptions{
		OutDir: filepath.Join(dir, "image-python"), AgentPath: filepath.Join(dir, "snapbpf-agent"),
		KernelPackage: base.KernelPackage,
		Runtime:       rt.Name, Rootfs: fs.Path, RootfsSHA256: fs.SHA256,
	})
}
