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
	"runtime"
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
	return needRuntime(t, "python")
}

// TorchEnv is the environment variable that lets tests build the
// python-torch root filesystem when the machine's cache lacks it.
const TorchEnv = "SNAPBPF_TEST_TORCH"

// NeedPythonTorch is NeedVM for the python-torch runtime. Its root
// filesystem (about 400 packages, a download of about 1 GiB) is optional:
// the test skips unless the machine's cache holds it (snapbpf image build
// --runtime python-torch) or TorchEnv=1 lets the test build it.
func NeedPythonTorch(t testing.TB) *guest.Image {
	t.Helper()
	NeedVM(t)
	r, err := rootfs.Lookup("python-torch")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := rootfs.EntryDir(guest.DefaultCacheDir, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rootfs.Load(entry); err != nil && os.Getenv(TorchEnv) != "1" {
		t.Skipf("no python-torch root filesystem in this machine's cache (%s): build it with snapbpf image build --runtime python-torch, or set %s=1 to let the test build it (a 1 GiB download)", entry, TorchEnv)
	}
	return needRuntime(t, "python-torch")
}

// runtimeImages are the guest images of the runtimes, built once per test
// binary.
var runtimeImages struct {
	sync.Mutex
	m map[string]*runtimeImage
}

type runtimeImage struct {
	once sync.Once
	img  *guest.Image
	err  error
}

func needRuntime(t testing.TB, name string) *guest.Image {
	t.Helper()
	base := NeedVM(t)
	runtimeImages.Lock()
	if runtimeImages.m == nil {
		runtimeImages.m = map[string]*runtimeImage{}
	}
	ri := runtimeImages.m[name]
	if ri == nil {
		ri = &runtimeImage{}
		runtimeImages.m[name] = ri
	}
	runtimeImages.Unlock()
	ri.once.Do(func() { ri.img, ri.err = buildRuntime(base, name) })
	if ri.err != nil {
		t.Fatal(ri.err)
	}
	return ri.img
}

func buildRuntime(base *guest.Image, name string) (*guest.Image, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	rt, err := rootfs.Lookup(name)
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
		OutDir: filepath.Join(dir, "image-"+name), AgentPath: filepath.Join(dir, "snapbpf-agent"),
		KernelPackage: base.KernelPackage,
		Runtime:       rt.Name, Rootfs: fs.Path, RootfsSHA256: fs.SHA256,
	})
}

// SettledGoroutines waits up to 5 s for the process's goroutine count to
// fall to at most want, and returns it: a test compares it with the count
// before it started servers, which take a moment to wind down.
func SettledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	return n
}
