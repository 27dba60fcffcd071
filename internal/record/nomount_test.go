package record

import (
	"cmp"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/majfault"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/tracepoint"

	"github.com/snapbpf/snapbpf/internal/testenv"
)

// noMountEnv marks the re-executed test binary that runs inside its own
// mount namespace; its value is the parent's mount namespace, which the
// child must not be in before it unmounts anything.
const noMountEnv = "SNAPBPF_TEST_NO_TRACEFS"

// TestNoTracefsNeeded runs every BPF program snapbpf attaches (the
// page-cache capture with its open and readahead hooks, the fault tracer,
// the major-fault counter) where neither tracefs nor debugfs is mounted,
// as on a fresh host. The test binary re-executes itself in a private mount
// namespace and unmounts both there, so the host's mounts, whatever they
// are, stay as they were.
func TestNoTracefsNeeded(t *testing.T) {
	testenv.NeedRoot(t, "mount namespaces and BPF")
	if parentNS, ok := os.LookupEnv(noMountEnv); ok {
		noTracefsChild(t, parentNS)
		return
	}
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Skipf("no mount namespaces: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoTracefsNeeded$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), noMountEnv+"="+ns)
	// Go makes every mount in the new namespace private (MS_REC|MS_PRIVATE
	// on /) before it runs the child, so unmounts there stay there.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}

// noTracefsChild is the test proper, in the child's own mount namespace.
func noTracefsChild(t *testing.T, parentNS string) {
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if ns == parentNS {
		t.Fatalf("still in the parent's mount namespace %s: refusing to unmount anything", ns)
	}
	unmountTracing(t)

	dir, err := os.MkdirTemp("/var/tmp", "snapbpf-nomount-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	t.Run("capture", func(t *testing.T) { captureWithoutTracefs(t, dir) })
	t.Run("faults", func(t *testing.T) { faultsWithoutTracefs(t, dir) })
	t.Run("majfault", func(t *testing.T) { majfaultWithoutTracefs(t, dir) })
}

// unmountTracing unmounts every tracefs and debugfs in this namespace,
// deepest first (the tracefs automounted in debugfs before debugfs).
func unmountTracing(t *testing.T) {
	for range 4 { // a point can carry several stacked mounts
		tracefs, debugfs, err := tracepoint.Mounts()
		if err != nil {
			t.Fatal(err)
		}
		points := append(tracefs, debugfs...)
		if len(points) == 0 {
			break
		}
		slices.SortFunc(points, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
		for _, p := range points {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				t.Fatalf("unmount %s: %v", p, err)
			}
			t.Logf("unmounted %s in this namespace", p)
		}
	}
	tracefs, debugfs, err := tracepoint.Mounts()
	if err != nil || len(tracefs)+len(debugfs) > 0 {
		t.Fatalf("still mounted: tracefs %q, debugfs %q (%v)", tracefs, debugfs, err)
	}
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		t.Fatal("/sys/kernel/tracing/events exists with nothing mounted")
	}
}

// coldFile writes a file of n pages of data and drops it from the page
// cache.
func coldFile(t *testing.T, dir, name string, n int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	buf := make([]byte, n*pages.Size)
	for i := range buf {
		buf[i] = byte(i/pages.Size + 1)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// coldMapping maps a cold file of n pages with MADV_RANDOM: each first
// touch is one major fault that reads one page.
func coldMapping(t *testing.T, dir, name string, n int) []byte {
	t.Helper()
	f, err := os.Open(coldFile(t, dir, name, n))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, n*pages.Size, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	return m
}

func touch(m []byte, idx ...int) {
	for _, p := range idx {
		atomic.LoadUint32((*uint32)(unsafe.Pointer(&m[p*pages.Size])))
	}
}

// captureWithoutTracefs records a child process (dd) reading a cold file:
// every page it read is captured, and its open of the file is seen (the
// sys_exit hook).
func captureWithoutTracefs(t *testing.T, dir string) {
	const nPages = 64
	path := coldFile(t, dir, "capture", nPages)
	r, err := capture.NewRecorder([]string{path})
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	defer r.Close()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dd", "if="+path, "of=/dev/null", "bs=4096").CombinedOutput()
	if err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	c, err := r.Stop()
	if err != nil {
		t.Fatal(err)
	}
	got := capture.Pages(c, 0)
	slices.Sort(got)
	got = slices.Compact(got)
	if len(got) != nPages {
		t.Errorf("captured %d distinct pages of %d read", len(got), nPages)
	}
	if len(c.Opens) == 0 {
		t.Error("no open of the file seen (sys_exit)")
	}
	if ks, err := capture.Kernel(); err == nil && ks.ReadaheadTracepoint && !c.ReadaheadChecked {
		t.Error("the readahead tracepoint exists but was not attached")
	}
	t.Logf("captured %d pages, %d opens, readahead windows %d (checked %v)", len(got), len(c.Opens), c.ReadaheadWindows, c.ReadaheadChecked)
}

// faultsWithoutTracefs traces this process's first touches of a mapping.
func faultsWithoutTracefs(t *testing.T, dir string) {
	m := coldMapping(t, dir, "faults", 32)
	tr, err := startFaultTracer(os.Getpid())
	if err != nil {
		t.Fatalf("fault tracer: %v", err)
	}
	defer tr.close()
	want := []int{2, 9, 17}
	touch(m, want...)
	raws, lost, err := tr.stop()
	if err != nil {
		t.Fatal(err)
	}
	base := uint64(uintptr(unsafe.Pointer(&m[0])))
	var got []int
	for _, r := range raws {
		if r.Kind == faultUser && r.Addr >= base && r.Addr < base+uint64(len(m)) {
			got = append(got, int((r.Addr-base)/pages.Size))
		}
	}
	got = slices.Compact(got)
	if !slices.Equal(got, want) || lost != 0 {
		t.Errorf("faults on the mapping at pages %v (lost %d), want %v", got, lost, want)
	}
}

// majfaultWithoutTracefs counts this thread's major faults in a mapping.
func majfaultWithoutTracefs(t *testing.T, dir string) {
	m := coldMapping(t, dir, "majfault", 32)
	start := uint64(uintptr(unsafe.Pointer(&m[0])))
	c, err := majfault.Start(os.Getpid(), start, start+uint64(len(m)))
	if err != nil {
		t.Fatalf("majfault: %v", err)
	}
	defer c.Close()
	runtime.LockOSThread()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &before)
	touch(m, 1, 5, 30)
	unix.Getrusage(unix.RUSAGE_THREAD, &after)
	runtime.UnlockOSThread()
	inside, _, err := c.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if took := after.Majflt - before.Majflt; took == 0 || inside != took {
		t.Errorf("counted %d major faults in the mapping, the thread took %d", inside, took)
	}
}
